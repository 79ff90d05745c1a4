package org.alertsidecar.worker;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;

/** The one JSON reader and writer of the SDK. */
final class Json {
    /**
     * Integers read as int, long or BigInteger by their size, never as double, so that 64-bit ids stay
     * exact. Strings may be as long as a gRPC message (base64 cutouts, whole alerts): Jackson's
     * default cap of 20 MB is for untrusted web input.
     */
    static final ObjectMapper MAPPER = JsonMapper.builder()
            .build();

    static {
        MAPPER.getFactory().setStreamReadConstraints(StreamReadConstraints.builder()
                .maxStringLength(AlertWorkerServer.MAX_MESSAGE_BYTES).build());
    }

    private Json() {
    }

    static JsonNode read(byte[] data) throws IOException {
        return MAPPER.readTree(data);
    }

    static byte[] write(JsonNode node) {
        try {
            return MAPPER.writeValueAsBytes(node);
        } catch (JsonProcessingException exc) {
            throw new IllegalStateException("a JSON tree that Jackson cannot write: " + exc.getMessage(), exc);
        }
    }
}
