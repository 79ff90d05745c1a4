package org.alertsidecar.worker;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.IntFunction;
import org.apache.avro.AvroRuntimeException;
import org.apache.avro.Schema;
import org.apache.avro.SchemaParseException;
import org.apache.avro.file.DataFileStream;
import org.apache.avro.file.DataFileWriter;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;

/**
 * Avro alerts in the two forms alert streams use, both ways.
 *
 * <ul>
 *   <li>Rubin (LSST): the Confluent wire format, byte 0 the magic byte 0, bytes 1 to 4 a big-endian
 *       schema id (Rubin's ids encode the schema version: 1101 is 11.1), then the schemaless Avro
 *       body. The sidecar sends the writer schema of each id with the batch, so a worker needs no
 *       registry of its own.</li>
 *   <li>ZTF: each Kafka message a whole Avro Object Container File, its schema inside.</li>
 * </ul>
 *
 * <p>Parsed schemas are cached by id: a Rubin schema is about 50 KB of JSON and parsing it takes
 * longer than decoding many alerts. Decoded strings are Avro's {@code Utf8} ({@code toString()} gives
 * a String); bytes fields (cutouts) are {@code ByteBuffer}s. Every method is thread-safe.
 */
public final class AvroAlerts {
    /** Bytes before the Avro body in the Confluent wire format: the magic byte and the schema id. */
    public static final int CONFLUENT_HEADER_BYTES = 5;

    private static final byte CONFLUENT_MAGIC = 0;

    private static final Map<Integer, ParsedSchema> SCHEMAS = new ConcurrentHashMap<>();

    private record ParsedSchema(String text, Schema schema) {
    }

    private static final Map<List<Object>, Schema> PROJECTIONS = new ConcurrentHashMap<>();
    private static final Map<List<Schema>, Schema> PREFIXES = new ConcurrentHashMap<>();

    private AvroAlerts() {
    }

    /**
     * A reader schema holding only some fields of a writer schema, for
     * {@link #decodeConfluent(byte[], Schema, Schema)} or {@link Alert#record(Schema)}: Avro then skips the
     * other fields (cutouts, light curves) without building them. Paths are dotted, as in
     * {@code WorkerDescription.fields} ({@code "diaSource.ra"}); a path through an array or a map applies to
     * its items; naming a record keeps all of it. Paths the writer lacks are left out. Cached per writer
     * schema and paths.
     *
     * @param writer the writer schema, a record
     * @param paths dotted field paths
     * @return the reader schema, with the writer's names (so that Avro resolves one into the other)
     */
    public static Schema projection(Schema writer, String... paths) {
        List<Object> key = List.of(writer, Arrays.asList(paths));
        return PROJECTIONS.computeIfAbsent(key, k -> {
            Map<String, Object> tree = new HashMap<>();
            for (String path : paths) {
                Map<String, Object> node = tree;
                String[] parts = path.split("\\.");
                for (int i = 0; i < parts.length; i++) {
                    if (i == parts.length - 1) {
                        node.put(parts[i], Boolean.TRUE); // the whole field
                    } else {
                        Object child = node.get(parts[i]);
                        if (child == Boolean.TRUE) {
                            break; // a shorter path keeps all of it already
                        }
                        @SuppressWarnings("unchecked")
                        Map<String, Object> next = child == null ? new HashMap<>() : (Map<String, Object>) child;
                        node.put(parts[i], next);
                        node = next;
                    }
                }
            }
            return project(writer, tree);
        });
    }

    /**
     * The writer record cut after the last top-level field the reader reads. Avro's binary encoding is
     * the fields one after the other, so that prefix decodes the same bytes and reading stops there,
     * rather than skipping field by field through what follows (a Rubin alert's light curve and
     * cutouts): several times faster for a reader of a few early fields.
     */
    private static Schema prefix(Schema writer, Schema reader) {
        if (writer.getType() != Schema.Type.RECORD || reader.getType() != Schema.Type.RECORD) {
            return writer;
        }
        return PREFIXES.computeIfAbsent(List.of(writer, reader), k -> {
            List<Schema.Field> fields = writer.getFields();
            int last = -1;
            for (int i = 0; i < fields.size(); i++) {
                if (reader.getField(fields.get(i).name()) != null) {
                    last = i;
                }
            }
            if (last == fields.size() - 1) {
                return writer;
            }
            List<Schema.Field> kept = new ArrayList<>();
            for (int i = 0; i <= last; i++) {
                kept.add(new Schema.Field(fields.get(i), fields.get(i).schema()));
            }
            Schema cut = Schema.createRecord(writer.getName(), writer.getDoc(), writer.getNamespace(), writer.isError(),
                    kept);
            for (String alias : writer.getAliases()) {
                cut.addAlias(alias);
            }
            return cut;
        });
    }

    @SuppressWarnings("unchecked")
    private static Schema project(Schema schema, Map<String, Object> keep) {
        switch (schema.getType()) {
            case UNION: {
                List<Schema> branches = new ArrayList<>();
                for (Schema branch : schema.getTypes()) {
                    branches.add(project(branch, keep));
                }
                return Schema.createUnion(branches);
            }
            case ARRAY:
                return Schema.createArray(project(schema.getElementType(), keep));
            case MAP:
                return Schema.createMap(project(schema.getValueType(), keep));
            case RECORD: {
                List<Schema.Field> fields = new ArrayList<>();
                for (Schema.Field field : schema.getFields()) {
                    Object wanted = keep.get(field.name());
                    if (wanted == null) {
                        continue;
                    }
                    Schema type = wanted == Boolean.TRUE ? field.schema() : project(field.schema(), (Map<String, Object>) wanted);
                    fields.add(new Schema.Field(field.name(), type, field.doc(), field.defaultVal(), field.order()));
                }
                Schema record = Schema.createRecord(schema.getName(), schema.getDoc(), schema.getNamespace(),
                        schema.isError(), fields);
                for (String alias : schema.getAliases()) {
                    record.addAlias(alias);
                }
                return record;
            }
            default:
                return schema; // a leaf on the way down: nothing to project
        }
    }

    /**
     * The schema id in a Confluent wire-format value.
     *
     * @param value the Kafka record value
     * @return the id in bytes 1 to 4
     * @throws AlertDecodeException if the value is too short or its first byte is not 0
     */
    public static int schemaId(byte[] value) {
        if (value.length < CONFLUENT_HEADER_BYTES) {
            throw new AlertDecodeException("the value is " + value.length + " bytes, too short for the Confluent "
                    + "wire format (a magic byte 0, a 4-byte schema id, then the Avro body)");
        }
        if (value[0] != CONFLUENT_MAGIC) {
            throw new AlertDecodeException(String.format("the value is not in the Confluent wire format: its first "
                    + "byte is 0x%02x, not the magic byte 0x00", value[0] & 0xff));
        }
        return ByteBuffer.wrap(value, 1, 4).getInt();
    }

    /**
     * A writer schema parsed from its JSON text, cached by id (parsed again if the text for an id
     * changes).
     *
     * @param schemaId the Confluent schema id
     * @param json the Avro schema as JSON, self-contained
     * @return the parsed schema
     * @throws AlertDecodeException if the text is not an Avro schema
     */
    public static Schema schema(int schemaId, String json) {
        ParsedSchema cached = SCHEMAS.get(schemaId);
        if (cached != null && cached.text.equals(json)) {
            return cached.schema;
        }
        try {
            Schema parsed = new Schema.Parser().parse(json);
            SCHEMAS.put(schemaId, new ParsedSchema(json, parsed));
            return parsed;
        } catch (SchemaParseException exc) {
            throw new AlertDecodeException("the writer schema of id " + schemaId + " is not an Avro schema: "
                    + exc.getMessage(), exc);
        }
    }

    /**
     * Decode a Confluent wire-format value with its writer schema.
     *
     * @param value the Kafka record value
     * @param writer the schema it was written with
     * @return the record
     * @throws AlertDecodeException for bytes that do not decode with that schema
     */
    public static GenericRecord decodeConfluent(byte[] value, Schema writer) {
        return decodeConfluent(value, writer, writer);
    }

    /**
     * Decode a Confluent wire-format value into a reader schema, for instance one holding only the
     * fields a worker reads: Avro skips the others without building them, which is faster.
     *
     * @param value the Kafka record value
     * @param writer the schema it was written with
     * @param reader the schema to read it as (Avro's schema resolution rules apply)
     * @return the record, of the reader schema
     * @throws AlertDecodeException for bytes that do not decode with that schema
     */
    public static GenericRecord decodeConfluent(byte[] value, Schema writer, Schema reader) {
        schemaId(value);
        return decodeBody(value, CONFLUENT_HEADER_BYTES, writer, reader);
    }

    /**
     * Decode a Confluent wire-format value, looking its writer schema up by the id it carries.
     *
     * @param value the Kafka record value
     * @param schemas the writer schema of an id, or null if unknown
     * @return the record
     * @throws AlertDecodeException for an unknown id or bytes that do not decode
     */
    public static GenericRecord decodeConfluent(byte[] value, IntFunction<Schema> schemas) {
        int id = schemaId(value);
        Schema writer = schemas.apply(id);
        if (writer == null) {
            throw new AlertDecodeException("no writer schema for Confluent schema id " + id + " (the sidecar "
                    + "sends the schema of every id with the batch; this alert came without one)");
        }
        return decodeBody(value, CONFLUENT_HEADER_BYTES, writer, writer);
    }

    private static GenericRecord decodeBody(byte[] value, int start, Schema writer, Schema reader) {
        Schema read = writer == reader ? writer : prefix(writer, reader);
        GenericDatumReader<GenericRecord> datumReader = new GenericDatumReader<>(read, reader);
        if (EmptyItems.holdsEmptyItems(writer)) {
            EmptyItems.check(value, start, value.length, writer);
        }
        BinaryDecoder decoder = DecoderFactory.get().binaryDecoder(value, start, value.length - start, null);
        try {
            return datumReader.read(null, decoder);
        } catch (IOException | AvroRuntimeException | IndexOutOfBoundsException | NegativeArraySizeException
                 | UnsupportedOperationException exc) {  // Avro's "cannot read collections larger than"
            throw new AlertDecodeException("the Avro body does not decode with the writer schema "
                    + writer.getFullName() + ": " + exc, exc);
        } catch (OutOfMemoryError exc) {
            throw tooLarge(exc);
        }
    }

    /**
     * Decode an Avro Object Container File (ZTF's form) and return its first record.
     *
     * @param value the Kafka record value: a whole container file
     * @return the first record, of the schema the file carries
     * @throws AlertDecodeException for bytes that are not a container file, or one with no record
     */
    public static GenericRecord decodeOcf(byte[] value) {
        try (DataFileStream<GenericRecord> stream =
                     new DataFileStream<>(new ByteArrayInputStream(value), new GenericDatumReader<>())) {
            if (!stream.hasNext()) {
                throw new AlertDecodeException("the Avro container file holds no record");
            }
            Schema schema = stream.getSchema();
            if (EmptyItems.holdsEmptyItems(schema)) {
                // The first block's bytes, walked before its first record is read (see EmptyItems).
                ByteBuffer block = stream.nextBlock();
                int start = block.arrayOffset() + block.position();
                EmptyItems.check(block.array(), start, start + block.remaining(), schema);
                BinaryDecoder decoder = DecoderFactory.get().binaryDecoder(block.array(), start, block.remaining(),
                        null);
                return new GenericDatumReader<GenericRecord>(schema).read(null, decoder);
            }
            return stream.next();
        } catch (IOException | AvroRuntimeException | IndexOutOfBoundsException | NegativeArraySizeException
                 | UnsupportedOperationException exc) {
            throw new AlertDecodeException("the value is not an Avro container file: " + exc.getMessage(), exc);
        } catch (OutOfMemoryError exc) {
            throw tooLarge(exc);
        }
    }

    /**
     * Avro's reader sets aside room for the items an array's block claims before it reads them, so a
     * damaged count (2*10^9 longs in a few bytes) asks for more heap than there is, and fails at that
     * one allocation, before anything is built: the alert is refused, and the worker goes on.
     */
    private static AlertDecodeException tooLarge(OutOfMemoryError exc) {
        return new AlertDecodeException("the Avro body claims an array or map larger than the worker's heap can "
                + "hold (" + exc.getMessage() + "): its bytes are damaged, or the heap (-Xmx) too small for it", exc);
    }

    /**
     * Encode a record in the Confluent wire format (the reverse of {@link #decodeConfluent}).
     *
     * @param schemaId the id to write in bytes 1 to 4
     * @param record the record, encoded with its own schema
     * @return the value
     */
    public static byte[] encodeConfluent(int schemaId, GenericRecord record) {
        Objects.requireNonNull(record, "record");
        ByteArrayOutputStream out = new ByteArrayOutputStream(1024);
        out.write(CONFLUENT_MAGIC);
        out.writeBytes(ByteBuffer.allocate(4).putInt(schemaId).array());
        BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
        try {
            new GenericDatumWriter<GenericRecord>(record.getSchema()).write(record, encoder);
            encoder.flush();
        } catch (IOException exc) {
            throw new IllegalStateException("writing to memory failed", exc);
        }
        return out.toByteArray();
    }

    /**
     * Encode records as one Avro Object Container File (the form ZTF sends, one record a message).
     *
     * @param records the records, all of the first one's schema
     * @return the file's bytes
     */
    public static byte[] encodeOcf(GenericRecord... records) {
        if (records.length == 0) {
            throw new IllegalArgumentException("encodeOcf needs at least one record");
        }
        Schema schema = records[0].getSchema();
        ByteArrayOutputStream out = new ByteArrayOutputStream(1024);
        try (DataFileWriter<GenericRecord> writer = new DataFileWriter<>(new GenericDatumWriter<>(schema))) {
            writer.create(schema, out);
            for (GenericRecord record : records) {
                writer.append(record);
            }
        } catch (IOException exc) {
            throw new IllegalStateException("writing to memory failed", exc);
        }
        return out.toByteArray();
    }
}
