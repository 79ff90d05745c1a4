package org.alertsidecar.worker;

import com.google.protobuf.ByteString;
import java.nio.charset.StandardCharsets;
import org.alertsidecar.v1.AlertBatch;

/** Contract messages for tests, as the sidecar would send them. */
final class Alerts {
    private Alerts() {
    }

    static org.alertsidecar.v1.Alert json(String json, long offset) {
        return message(json.getBytes(StandardCharsets.UTF_8), ContentTypes.JSON, offset);
    }

    static org.alertsidecar.v1.Alert message(byte[] value, String contentType, long offset) {
        return org.alertsidecar.v1.Alert.newBuilder().setId("test/0/" + offset).setTopic("test").setPartition(0)
                .setOffset(offset).setValue(ByteString.copyFrom(value)).setContentType(contentType).build();
    }

    static AlertBatch batch(long batchId, org.alertsidecar.v1.Alert... alerts) {
        return AlertBatch.newBuilder().setBatchId(batchId).addAllAlerts(java.util.List.of(alerts)).build();
    }
}
