package org.alertsidecar.examples.crossmatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.protobuf.ByteString;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.alertsidecar.worker.Alert;
import org.alertsidecar.worker.AvroAlerts;
import org.alertsidecar.worker.ContentTypes;
import org.alertsidecar.worker.DeadLetterException;
import org.alertsidecar.worker.Output;
import org.alertsidecar.worker.Result;
import org.alertsidecar.worker.Verdict;
import org.apache.avro.Schema;
import org.apache.avro.SchemaBuilder;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Alerts in, annotations out: Rubin Avro (as the sidecar passes it) and the JSON form, with exact ids. */
class CrossmatchTest {
    /** The fields of Rubin's schema the worker reads, in their places, and a cutout after them. */
    static final Schema SOURCE = SchemaBuilder.record("diaSource").namespace("lsst.v11_1").fields()
            .requiredLong("diaSourceId").requiredDouble("ra").requiredDouble("dec").optionalLong("diaObjectId")
            .endRecord();
    static final Schema ALERT = SchemaBuilder.record("alert").namespace("lsst.v11_1").fields()
            .requiredLong("diaSourceId").name("diaSource").type(SOURCE).noDefault()
            .name("cutoutDifference").type().optional().bytesType().endRecord();
    static final ObjectMapper JSON = new ObjectMapper();

    private static Crossmatch crossmatch() {
        Catalog catalog = new Catalog(2);
        catalog.add(150.0, 2.0, "GAL-1", SourceType.GALAXY, 4.0);
        catalog.add(150.0, 2.0 + 1.5 / 3600, "STAR-1", SourceType.STAR, 0);
        return new Crossmatch(new SkyIndex(catalog), 2.0, 5);
    }

    private static JsonNode annotation(Result result) throws IOException {
        assertEquals(Verdict.OK, result.verdict(), result.error());
        Output output = result.outputs().get(0);
        assertEquals(ContentTypes.JSON, output.contentType());
        assertEquals(Crossmatch.CLASS_HEADER, output.headers().get(0).name());
        JsonNode annotation = JSON.readTree(output.value());
        assertEquals(annotation.get("classification").asText(), output.headers().get(0).valueAsString());
        return annotation;
    }

    @Test
    void rubinAvroAlert() throws IOException {
        long id = (1L << 62) + 12345; // above 2^53: a double would change it
        GenericRecord source = new GenericData.Record(SOURCE);
        source.put("diaSourceId", id);
        source.put("ra", 150.0 + 1.0 / 3600 / Math.cos(Math.toRadians(2.0)));
        source.put("dec", 2.0);
        source.put("diaObjectId", id - 7);
        GenericRecord alert = new GenericData.Record(ALERT);
        alert.put("diaSourceId", id);
        alert.put("diaSource", source);
        alert.put("cutoutDifference", ByteBuffer.wrap(new byte[18_000]));
        byte[] value = AvroAlerts.encodeConfluent(1101, alert);
        org.alertsidecar.v1.Alert message = org.alertsidecar.v1.Alert.newBuilder().setId("in/0/1")
                .setValue(ByteString.copyFrom(value)).setContentType(ContentTypes.AVRO_CONFLUENT).build();

        JsonNode annotation = annotation(crossmatch().process(Alert.of(message, Map.of(1101, ALERT.toString()))));
        assertEquals(id, annotation.get("diaSourceId").longValue());
        assertEquals(id - 7, annotation.get("diaObjectId").longValue());
        assertEquals(Classifier.SUPERNOVA_CANDIDATE, annotation.get("classification").asText()); // 1" east
        assertEquals("GAL-1", annotation.get("matches").get(0).get("name").asText());
        assertEquals(1.0, annotation.get("matches").get(0).get("separation_arcsec").asDouble(), 1e-6);
        assertEquals("STAR-1", annotation.get("matches").get(1).get("name").asText());
        assertEquals(Math.hypot(1.0, 1.5), annotation.get("matches").get(1).get("separation_arcsec").asDouble(), 1e-6);
    }

    @Test
    void jsonFormAndAlertsWithoutAPosition() throws IOException {
        String json = "{\"diaSourceId\": 9223372036854775807, \"diaSource\": {\"ra\": 150.0, \"dec\": 2.00005, "
                + "\"diaObjectId\": 9007199254740993}}";
        org.alertsidecar.v1.Alert message = org.alertsidecar.v1.Alert.newBuilder().setId("in/0/2")
                .setValue(ByteString.copyFrom(json, StandardCharsets.UTF_8)).setContentType(ContentTypes.JSON).build();
        JsonNode annotation = annotation(crossmatch().process(Alert.of(message)));
        assertEquals(Long.MAX_VALUE, annotation.get("diaSourceId").longValue());
        assertEquals(9007199254740993L, annotation.get("diaObjectId").longValue());
        assertEquals(Classifier.NUCLEAR_TRANSIENT, annotation.get("classification").asText()); // 0.18" north

        org.alertsidecar.v1.Alert empty = message.toBuilder()
                .setValue(ByteString.copyFromUtf8("{\"diaSource\": {\"ra\": null, \"dec\": 1}}")).build();
        assertThrows(DeadLetterException.class, () -> crossmatch().process(Alert.of(empty)));
    }

    @Test
    void catalogueCsvRoundTripAndErrors(@TempDir Path dir) throws IOException {
        Catalog generated = Catalog.generate(1000, 5);
        Path file = dir.resolve("catalog.csv");
        generated.writeCsv(file);
        Catalog read = Catalog.readCsv(file);
        assertEquals(1000, read.size());
        for (int row = 0; row < 1000; row += 97) {
            assertEquals(generated.ra(row), read.ra(row));
            assertEquals(generated.name(row), read.name(row));
            assertEquals(generated.type(row), read.type(row));
        }
        assertEquals(generated.name(999), Catalog.generate(1000, 5).name(999), "the same seed, the same catalogue");
        Files.writeString(file, Catalog.HEADER + "\n1,2,x,star,0\n1,2,y,star\n");
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> Catalog.readCsv(file));
        assertEquals(true, bad.getMessage().contains("catalog.csv:3"), bad.getMessage());
        assertEquals("ACX J100000.00+020000.0", Catalog.designation(150.0, 2.0));
    }
}
