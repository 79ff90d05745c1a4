package org.alertsidecar.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.file.CodecFactory;
import org.apache.avro.file.DataFileWriter;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/**
 * A damaged count of items that take no bytes is refused at once, not followed: a few bytes can
 * claim billions of nulls, and Avro's reader would build every one.
 */
class EmptyItemsTest {
    static final Schema NULLS = parse("{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"test\",\"fields\":["
            + "{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"flags\",\"type\":{\"type\":\"array\",\"items\":\"null\"}}]}");
    static final Schema FIXED = parse("{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"test\",\"fields\":["
            + "{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"a\",\"type\":{\"type\":\"fixed\",\"name\":\"Nothing\",\"size\":0}},"
            + "{\"name\":\"b\",\"type\":{\"type\":\"array\",\"items\":\"Nothing\"}}]}");
    static final Schema MARKS = parse("{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"test\",\"fields\":["
            + "{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"marks\",\"type\":{\"type\":\"array\",\"items\":"
            + "{\"type\":\"record\",\"name\":\"Mark\",\"fields\":[{\"name\":\"x\",\"type\":\"null\"}]}}}]}");
    /** A record naming the same record of one null twice: it takes no bytes either. */
    static final Schema PAIRS = parse("{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"test\",\"fields\":["
            + "{\"name\":\"id\",\"type\":\"long\"},{\"name\":\"pairs\",\"type\":{\"type\":\"array\",\"items\":"
            + "{\"type\":\"record\",\"name\":\"Pair\",\"fields\":[{\"name\":\"a\",\"type\":"
            + "{\"type\":\"record\",\"name\":\"Mark\",\"fields\":[{\"name\":\"x\",\"type\":\"null\"}]}},"
            + "{\"name\":\"b\",\"type\":\"Mark\"}]}}}]}");
    static final List<Schema> SCHEMAS = List.of(NULLS, FIXED, MARKS, PAIRS);

    static Schema parse(String text) {
        return new Schema.Parser().parse(text);
    }

    static void zigzag(ByteArrayOutputStream out, long n) {
        long z = (n << 1) ^ (n >> 63);
        while ((z & ~0x7FL) != 0) {
            out.write((int) ((z & 0x7F) | 0x80));
            z >>>= 7;
        }
        out.write((int) z);
    }

    /** A Confluent-framed value of id 7: id 1, then the array as blocks of the given counts, then its end. */
    static byte[] value(long... blocks) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes(new byte[] {0, 0, 0, 0, 7});
        zigzag(out, 1);
        for (long n : blocks) {
            zigzag(out, n);
            if (n < 0) {
                zigzag(out, 0);  // a negative count is followed by the block's size
            }
        }
        zigzag(out, 0);
        return out.toByteArray();
    }

    static void refusedAtOnce(byte[] value, Schema schema) {
        long started = System.nanoTime();
        AlertDecodeException exc = assertThrows(AlertDecodeException.class,
                () -> AvroAlerts.decodeConfluent(value, id -> schema));
        assertTrue(exc.getMessage().contains("claims a block of"), exc.getMessage());
        assertTrue((System.nanoTime() - started) / 1e9 < 5, "a refusal must not first follow the count");
    }

    @ParameterizedTest
    @ValueSource(longs = {1L << 40, 1L << 62, -(1L << 62), Long.MIN_VALUE})
    void aHugeCountIsRefusedAtOnce(long count) {
        for (Schema schema : SCHEMAS) {
            refusedAtOnce(value(count), schema);
        }
    }

    @Test
    void theRefusalSaysWhatTheBodyClaims() {
        AlertDecodeException exc = assertThrows(AlertDecodeException.class,
                () -> AvroAlerts.decodeConfluent(value(1L << 40), id -> NULLS));
        assertEquals("the Avro body claims a block of 1099511627776 items at byte 7, more than a body of 8 bytes "
                + "can hold (one item a byte and 65536 of a type that takes no bytes): the bytes are damaged",
                exc.getMessage());
        exc = assertThrows(AlertDecodeException.class,
                () -> AvroAlerts.decodeConfluent(value(Long.MIN_VALUE), id -> NULLS));
        assertTrue(exc.getMessage().contains("a block of 9223372036854775808 items"), exc.getMessage());
    }

    @Test
    void avrosOwnRefusalOfAHugeCountIsAnAlertDecodeException() {
        // Longs take bytes, so the body is not walked: Avro refuses the count, in its own words.
        Schema longs = parse("{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},"
                + "{\"name\":\"f\",\"type\":{\"type\":\"array\",\"items\":\"long\"}}]}");
        assertFalse(EmptyItems.holdsEmptyItems(longs));
        AlertDecodeException exc = assertThrows(AlertDecodeException.class,
                () -> AvroAlerts.decodeConfluent(value(1L << 40), id -> longs));
        assertTrue(exc.getMessage().contains("does not decode") && exc.getMessage().contains("larger than"),
                exc.getMessage());
    }

    @Test
    void manyBlocksWithinTheBudgetEachAreRefusedTogether() {
        long[] blocks = new long[1000];
        java.util.Arrays.fill(blocks, EmptyItems.ZERO_SIZE_ITEMS);
        for (Schema schema : SCHEMAS) {
            refusedAtOnce(value(blocks), schema);
        }
    }

    @Test
    void theBudgetIsOneItemAByteAndZeroSizeItemsMore() {
        int bodyBytes = value(EmptyItems.ZERO_SIZE_ITEMS).length - AvroAlerts.CONFLUENT_HEADER_BYTES;
        long at = bodyBytes + EmptyItems.ZERO_SIZE_ITEMS;
        assertEquals(bodyBytes, value(at).length - AvroAlerts.CONFLUENT_HEADER_BYTES);  // as many bytes
        for (Schema schema : SCHEMAS) {
            GenericRecord record = AvroAlerts.decodeConfluent(value(at), id -> schema);
            assertEquals(at, ((List<?>) record.get(record.getSchema().getFields().size() - 1)).size());
            refusedAtOnce(value(at + 1), schema);
        }
    }

    @Test
    void anOrdinaryArrayOfNullsDecodes() {
        GenericRecord record = AvroAlerts.decodeConfluent(value(1000), id -> NULLS);
        assertEquals(1000, ((List<?>) record.get("flags")).size());
    }

    /** An Object Container File: the header Avro writes, then one block claiming count records. */
    static byte[] container(Schema schema, long count, byte[] data, CodecFactory codec) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (DataFileWriter<GenericRecord> writer = new DataFileWriter<>(new GenericDatumWriter<>(schema))) {
            writer.setCodec(codec);
            writer.create(schema, out);
        }
        byte[] header = out.toByteArray();
        byte[] sync = java.util.Arrays.copyOfRange(header, header.length - 16, header.length);
        zigzag(out, count);
        zigzag(out, data.length);
        out.writeBytes(data);
        out.writeBytes(sync);
        return out.toByteArray();
    }

    static byte[] body(long... blocks) {
        byte[] framed = value(blocks);
        return java.util.Arrays.copyOfRange(framed, AvroAlerts.CONFLUENT_HEADER_BYTES, framed.length);
    }

    @Test
    void aContainerFileWhoseRecordClaimsBillionsOfNullsIsRefusedAtOnce() throws IOException {
        long started = System.nanoTime();
        AlertDecodeException exc = assertThrows(AlertDecodeException.class,
                () -> AvroAlerts.decodeOcf(container(NULLS, 1, body(1L << 50), CodecFactory.nullCodec())));
        assertTrue(exc.getMessage().contains("claims a block of"), exc.getMessage());
        assertTrue((System.nanoTime() - started) / 1e9 < 5);
        GenericRecord record = AvroAlerts.decodeOcf(container(NULLS, 1, body(3), CodecFactory.nullCodec()));
        assertEquals(3, ((List<?>) record.get("flags")).size());
    }

    @Test
    void aCompressedContainerFileIsWalkedAfterItsBlockIsInflated() throws IOException {
        GenericRecord record = new GenericData.Record(NULLS);
        record.put("id", 4L);
        record.put("flags", java.util.Collections.nCopies(5, null));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (DataFileWriter<GenericRecord> writer = new DataFileWriter<>(new GenericDatumWriter<>(NULLS))) {
            writer.setCodec(CodecFactory.deflateCodec(6));
            writer.create(NULLS, out);
            writer.append(record);
        }
        GenericRecord read = AvroAlerts.decodeOcf(out.toByteArray());
        assertEquals(4L, read.get("id"));
        assertEquals(5, ((List<?>) read.get("flags")).size());
    }

    @Test
    void aContainerFileClaimingBillionsOfEmptyRecordsGivesItsFirst() throws IOException {
        // decodeOcf gives the first record of a file: the block's count is not followed.
        Schema empty = parse("{\"type\":\"record\",\"name\":\"E\",\"fields\":[{\"name\":\"x\",\"type\":\"null\"}]}");
        assertTrue(EmptyItems.holdsEmptyItems(empty));
        long started = System.nanoTime();
        GenericRecord record = AvroAlerts.decodeOcf(container(empty, 1L << 50, new byte[0], CodecFactory.nullCodec()));
        assertEquals(null, record.get("x"));
        assertTrue((System.nanoTime() - started) / 1e9 < 5);
        assertEquals(null, AvroAlerts.decodeOcf(container(empty, 1, new byte[0], CodecFactory.nullCodec())).get("x"));
    }

    @Test
    void onlySchemasThatCanHoldItemsOfNoBytesAreWalked() {
        for (Schema schema : SCHEMAS) {
            assertTrue(EmptyItems.holdsEmptyItems(schema), schema.toString());
        }
        // A union writes its branch, a map its keys, an enum its index: none of them is empty.
        assertFalse(EmptyItems.holdsEmptyItems(parse("{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                + "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":[\"null\",\"long\"]}},"
                + "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"null\"}},"
                + "{\"name\":\"e\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"enum\",\"name\":\"One\","
                + "\"symbols\":[\"A\"]}}}]}")));
        assertFalse(EmptyItems.holdsEmptyItems(AlertTest.ALERT));
    }

    @Test
    void ztfsSchemaIsNotWalked() throws IOException {
        Path packets = Path.of("../../../tests/data/ztf");  // the repository's sample ZTF packets
        List<Path> files;
        try (Stream<Path> listing = Files.list(packets)) {
            files = listing.filter(path -> path.toString().endsWith(".avro")).toList();
        }
        assertFalse(files.isEmpty(), "no ZTF packet in " + packets.toAbsolutePath());
        for (Path file : files) {
            Schema schema = AvroAlerts.decodeOcf(Files.readAllBytes(file)).getSchema();
            assertFalse(EmptyItems.holdsEmptyItems(schema), file.toString());
        }
    }

    @Test
    void aCountOfItemsThatTakeBytesBeyondTheHeapIsAnAlertDecodeException() {
        // Not walked (longs take bytes), but Avro's reader sets aside room for the count a block
        // claims before reading its items: 2*10^9 of them is more heap than there is.
        Schema longs = parse("{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},"
                + "{\"name\":\"xs\",\"type\":{\"type\":\"array\",\"items\":\"long\"}}]}");
        Schema map = parse("{\"type\":\"record\",\"name\":\"M\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},"
                + "{\"name\":\"xs\",\"type\":{\"type\":\"map\",\"values\":\"long\"}}]}");
        for (Schema schema : List.of(longs, map)) {
            assertFalse(EmptyItems.holdsEmptyItems(schema));
            long started = System.nanoTime();
            assertThrows(AlertDecodeException.class,
                    () -> AvroAlerts.decodeConfluent(value(2_000_000_000L), id -> schema));
            assertTrue((System.nanoTime() - started) / 1e9 < 5);
            GenericRecord record = AvroAlerts.decodeConfluent(
                    AvroAlerts.encodeConfluent(7, record(schema)), id -> schema);
            assertEquals(3, ((java.util.Collection<?>) (record.get("xs") instanceof java.util.Map<?, ?> m
                    ? m.values() : (java.util.Collection<?>) record.get("xs"))).size());
        }
    }

    private static GenericRecord record(Schema schema) {
        GenericRecord record = new GenericData.Record(schema);
        record.put("id", 1L);
        if (schema.getField("xs").schema().getType() == Schema.Type.MAP) {
            record.put("xs", java.util.Map.of("a", 1L, "b", 2L, "c", 3L));
        } else {
            record.put("xs", List.of(1L, 2L, 3L));
        }
        return record;
    }
}
