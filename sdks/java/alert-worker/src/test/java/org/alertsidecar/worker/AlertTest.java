package org.alertsidecar.worker;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.SchemaBuilder;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.junit.jupiter.api.Test;

/** Reading an alert: metadata, exact JSON integers, and Avro in both of its forms. */
class AlertTest {
    static final Schema SOURCE = SchemaBuilder.record("diaSource").namespace("test").fields()
            .requiredLong("diaSourceId").requiredDouble("ra").requiredDouble("dec")
            .optionalLong("diaObjectId").endRecord();
    static final Schema ALERT = SchemaBuilder.record("alert").namespace("test").fields()
            .requiredLong("diaSourceId").name("diaSource").type(SOURCE).noDefault()
            .name("cutout").type().bytesType().noDefault().endRecord();

    static GenericRecord alertRecord(long id, double ra, double dec) {
        GenericRecord source = new GenericData.Record(SOURCE);
        source.put("diaSourceId", id);
        source.put("ra", ra);
        source.put("dec", dec);
        source.put("diaObjectId", id - 1);
        GenericRecord alert = new GenericData.Record(ALERT);
        alert.put("diaSourceId", id);
        alert.put("diaSource", source);
        alert.put("cutout", ByteBuffer.wrap(new byte[20_000]));
        return alert;
    }

    @Test
    void metadataKeyAndHeaders() {
        org.alertsidecar.v1.Alert message = Alerts.json("{}", 7).toBuilder().setKey(ByteString.EMPTY)
                .addHeaders(org.alertsidecar.v1.Header.newBuilder().setKey("h").setValue(ByteString.copyFromUtf8("1")))
                .addHeaders(org.alertsidecar.v1.Header.newBuilder().setKey("h").setValue(ByteString.copyFromUtf8("2")))
                .setAttempt(2).build();
        Alert alert = Alert.of(message);
        assertEquals(0, alert.key().orElseThrow().length, "an empty key is a key, as in Kafka");
        assertFalse(Alert.of(Alerts.json("{}", 8)).key().isPresent());
        assertEquals(2, alert.headers().size());
        assertEquals("2", new String(alert.header("h").orElseThrow()));
        assertEquals(2, alert.attempt());
        assertEquals(7, alert.offset());
    }

    @Test
    void jsonIntegersStayExact() {
        Alert alert = Alert.of(Alerts.json("{\"a\": 9007199254740993, \"b\": 9223372036854775807, "
                + "\"c\": 18446744073709551616}", 0));
        assertEquals(9007199254740993L, alert.json().get("a").asLong());
        assertEquals(Long.MAX_VALUE, alert.json().get("b").longValue());
        assertEquals(new BigInteger("18446744073709551616"), alert.json().get("c").bigIntegerValue());
        assertEquals("{\"a\":9007199254740993}",
                new String(Output.json(((com.fasterxml.jackson.databind.node.ObjectNode) alert.json()).retain("a")).value()));
    }

    @Test
    void confluentAvroDecodesWithTheBatchSchema() {
        long id = (1L << 62) + 5;
        byte[] value = AvroAlerts.encodeConfluent(1101, alertRecord(id, 10.5, -20.25));
        assertEquals(1101, AvroAlerts.schemaId(value));
        Alert alert = Alert.of(Alerts.message(value, ContentTypes.AVRO_CONFLUENT, 0), Map.of(1101, ALERT.toString()));
        assertEquals(1101, alert.schemaId());
        GenericRecord record = alert.record();
        assertEquals(id, record.get("diaSourceId"));
        assertEquals(-20.25, ((GenericRecord) record.get("diaSource")).get("dec"));
        // A projection reads the same values and stops before the cutout.
        Schema reader = AvroAlerts.projection(ALERT, "diaSource.ra", "diaSource.dec");
        GenericRecord projected = alert.record(reader);
        assertFalse(projected.hasField("cutout"));
        assertFalse(projected.hasField("diaSourceId"));
        assertEquals(10.5, ((GenericRecord) projected.get("diaSource")).get("ra"));
        // Without the schema, or with bytes cut short, it does not decode: a dead letter, not a crash.
        assertThrows(AlertDecodeException.class,
                () -> Alert.of(Alerts.message(value, ContentTypes.AVRO_CONFLUENT, 0)).record());
        byte[] truncated = Arrays.copyOf(value, value.length - 100);
        assertThrows(AlertDecodeException.class, () -> Alert.of(Alerts.message(truncated, ContentTypes.AVRO_CONFLUENT, 0),
                Map.of(1101, ALERT.toString())).record());
        assertThrows(AlertDecodeException.class, () -> AvroAlerts.schemaId(new byte[] {1, 0, 0, 0, 1, 2}));
    }

    @Test
    void ocfAvroDecodesItsFirstRecord() {
        byte[] file = AvroAlerts.encodeOcf(alertRecord(42, 1, 2));
        GenericRecord record = Alert.of(Alerts.message(file, ContentTypes.AVRO_OCF, 0)).record();
        assertEquals(42L, record.get("diaSourceId"));
        assertArrayEquals(new byte[20_000], ((ByteBuffer) record.get("cutout")).array());
        assertThrows(AlertDecodeException.class,
                () -> Alert.of(Alerts.message(new byte[] {1, 2, 3}, ContentTypes.AVRO_OCF, 0)).record());
    }
}
