package org.alertsidecar.worker;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericRecord;

/**
 * One alert as read from the input buffer: a read-only view of the contract's {@code Alert}.
 *
 * <p>The Kafka record's fields ({@link #id()}, {@link #topic()}, {@link #partition()},
 * {@link #offset()}, {@link #timestampMs()}, {@link #key()}, {@link #value()}, {@link #headers()},
 * {@link #attempt()}) and what the sidecar says of the value ({@link #contentType()},
 * {@link #sourceContentType()}, {@link #schemaId()}). {@link #record()} and {@link #json()} decode the
 * value; each call decodes again, so keep the result if you need it twice.
 */
public final class Alert {
    private final org.alertsidecar.v1.Alert message;
    private final Map<Integer, String> schemas;
    /** Parsed writer schemas, shared by the alerts of one batch: each id is looked up once a batch. */
    private final Map<Integer, Schema> parsed;
    private List<Header> headers;

    private Alert(org.alertsidecar.v1.Alert message, Map<Integer, String> schemas, Map<Integer, Schema> parsed) {
        this.message = message;
        this.schemas = schemas;
        this.parsed = parsed;
    }

    /**
     * An alert of the contract's message, with the writer schemas its batch carried.
     *
     * @param message the {@code Alert} as the sidecar sent it
     * @param schemas {@code AlertBatch.schemas}: writer schema JSON by Confluent schema id (may be empty)
     * @return the alert
     */
    public static Alert of(org.alertsidecar.v1.Alert message, Map<Integer, String> schemas) {
        return new Alert(Objects.requireNonNull(message, "message"), Map.copyOf(schemas), new ConcurrentHashMap<>());
    }

    /**
     * An alert of the contract's message, with no writer schemas (enough for JSON and ZTF alerts).
     *
     * @param message the {@code Alert} as the sidecar sent it
     * @return the alert
     */
    public static Alert of(org.alertsidecar.v1.Alert message) {
        return new Alert(Objects.requireNonNull(message, "message"), Map.of(), new ConcurrentHashMap<>());
    }

    static Alert ofBatch(org.alertsidecar.v1.Alert message, Map<Integer, String> sharedSchemas,
                         Map<Integer, Schema> sharedParsed) {
        return new Alert(message, sharedSchemas, sharedParsed);
    }

    /**
     * Identifies the alert within one call: {@code "<topic>/<partition>/<offset>"}.
     *
     * @return the id every result must carry
     */
    public String id() {
        return message.getId();
    }

    /**
     * The Kafka topic of the input buffer.
     *
     * @return the topic
     */
    public String topic() {
        return message.getTopic();
    }

    /**
     * The Kafka partition the alert was read from.
     *
     * @return the partition
     */
    public int partition() {
        return message.getPartition();
    }

    /**
     * The alert's offset in its partition.
     *
     * @return the offset
     */
    public long offset() {
        return message.getOffset();
    }

    /**
     * The Kafka record timestamp in milliseconds since the Unix epoch; 0 if the record has none.
     *
     * @return the timestamp
     */
    public long timestampMs() {
        return message.getTimestampMs();
    }

    /**
     * The Kafka record key; empty if the record has none. A key of zero bytes is a key, as in Kafka.
     *
     * @return the key's bytes
     */
    public Optional<byte[]> key() {
        return message.hasKey() ? Optional.of(message.getKey().toByteArray()) : Optional.empty();
    }

    /**
     * The Kafka record value: the alert itself, in the form {@link #contentType()} names.
     *
     * @return a copy of the value's bytes
     */
    public byte[] value() {
        return message.getValue().toByteArray();
    }

    /**
     * What {@link #value()} holds, as a media type, e.g. {@code application/vnd.apache.avro+confluent}.
     *
     * @return the content type
     */
    public String contentType() {
        return message.getContentType();
    }

    /**
     * The Kafka record headers, in record order (names may repeat).
     *
     * @return an unmodifiable list
     */
    public List<Header> headers() {
        if (headers == null) {
            List<Header> list = new ArrayList<>(message.getHeadersCount());
            for (org.alertsidecar.v1.Header header : message.getHeadersList()) {
                list.add(Header.of(header.getKey(), header.getValue().toByteArray()));
            }
            headers = Collections.unmodifiableList(list);
        }
        return headers;
    }

    /**
     * The value of the last header of that name, as Kafka's {@code lastHeader} reads it.
     *
     * @param name the header's name
     * @return its value, or empty if the record has no such header
     */
    public Optional<byte[]> header(String name) {
        List<Header> all = headers();
        for (int i = all.size() - 1; i >= 0; i--) {
            if (all.get(i).name().equals(name)) {
                return Optional.of(all.get(i).value());
            }
        }
        return Optional.empty();
    }

    /**
     * How many times this alert was sent to a worker before: 0 on the first try.
     *
     * @return the attempt
     */
    public int attempt() {
        return message.getAttempt();
    }

    /**
     * What the alert was in the input buffer when the sidecar converted it for the worker (e.g. Avro
     * when {@link #value()} is that alert decoded into JSON); empty when the value is the input as it
     * was.
     *
     * @return the source content type, or {@code ""}
     */
    public String sourceContentType() {
        return message.getSourceContentType();
    }

    /**
     * The Confluent schema id of the input alert (Rubin's encode the version: 1101 is 11.1); 0 if none.
     * As the sidecar sent it, else, for a Confluent-framed value, the id in its bytes 1 to 4.
     *
     * @return the schema id
     */
    public int schemaId() {
        if (message.getSchemaId() != 0) {
            return message.getSchemaId();
        }
        if (ContentTypes.AVRO_CONFLUENT.equals(ContentTypes.mediaType(contentType())) && message.getValue().size() >= 5
                && message.getValue().byteAt(0) == 0) {
            return message.getValue().substring(1, 5).asReadOnlyByteBuffer().getInt();
        }
        return 0;
    }

    /**
     * The value decoded as Avro, by its content type.
     *
     * <ul>
     *   <li>{@code application/vnd.apache.avro+confluent} (Rubin): with the writer schema the sidecar sent
     *       with the batch for the id in bytes 1 to 4;</li>
     *   <li>{@code application/vnd.apache.avro.ocf} (ZTF): the first record of the container file.</li>
     * </ul>
     *
     * @return the record
     * @throws AlertDecodeException for bytes that do not decode, an id the batch has no schema for, or
     *     another content type (read JSON with {@link #json()})
     */
    public GenericRecord record() {
        String kind = ContentTypes.mediaType(contentType());
        if (ContentTypes.AVRO_CONFLUENT.equals(kind)) {
            return AvroAlerts.decodeConfluent(message.getValue().toByteArray(), writerSchema(schemaIdInValue()));
        }
        if (ContentTypes.AVRO_OCF.equals(kind)) {
            return AvroAlerts.decodeOcf(message.getValue().toByteArray());
        }
        throw new AlertDecodeException(notAvro());
    }

    /**
     * The value decoded as Avro into a reader schema, e.g. one holding only the fields the worker reads
     * (Avro then skips the rest without building it). Confluent-framed values only.
     *
     * @param reader the schema to read the alert as (Avro's schema resolution rules apply)
     * @return the record, of the reader schema
     * @throws AlertDecodeException as {@link #record()}
     */
    public GenericRecord record(Schema reader) {
        if (!ContentTypes.AVRO_CONFLUENT.equals(ContentTypes.mediaType(contentType()))) {
            throw new AlertDecodeException("record(readerSchema) reads " + ContentTypes.AVRO_CONFLUENT + " alerts; "
                    + notAvro());
        }
        return AvroAlerts.decodeConfluent(message.getValue().toByteArray(), writerSchema(schemaIdInValue()), reader);
    }

    /**
     * The writer schema the batch carried for a Confluent schema id.
     *
     * @param schemaId the id
     * @return the parsed schema
     * @throws AlertDecodeException if the batch has none for that id
     */
    public Schema writerSchema(int schemaId) {
        String text = schemas.get(schemaId);
        if (text == null) {
            throw new AlertDecodeException("alert " + id() + " has Confluent schema id " + schemaId + " and its batch "
                    + "carries no writer schema for it (the sidecar sends one with every batch of Avro alerts "
                    + "passed as they are)");
        }
        return parsed.computeIfAbsent(schemaId, id -> AvroAlerts.schema(id, text));
    }

    private int schemaIdInValue() {
        byte[] head = message.getValue().substring(0, Math.min(5, message.getValue().size())).toByteArray();
        return AvroAlerts.schemaId(head);
    }

    private String notAvro() {
        if (!sourceContentType().isEmpty()) {
            return "alert " + id() + " was " + sourceContentType() + " in the input buffer and the sidecar decoded it "
                    + "into " + contentType() + " for this worker (it accepts that form): read it with json(), or "
                    + "accept " + ContentTypes.mediaType(sourceContentType()) + " to get the Avro bytes";
        }
        return "record() decodes " + ContentTypes.AVRO_CONFLUENT + " or " + ContentTypes.AVRO_OCF + ", and alert " + id()
                + " has content type '" + contentType() + "': use json(), or read value()";
    }

    /**
     * The value parsed as JSON, whatever the content type says. Integers stay exact: a 64-bit id is a
     * {@code LongNode} (read it with {@code asLong()}), a larger one a {@code BigIntegerNode}; never a
     * double. For an Avro alert the sidecar decoded, this is the contract's JSON form (bytes as base64,
     * timestamps ISO 8601, NaN as null).
     *
     * @return the JSON tree
     * @throws AlertDecodeException if the value is not JSON
     */
    public JsonNode json() {
        try {
            JsonNode tree = Json.read(message.getValue().toByteArray());
            if (tree == null || tree.isMissingNode()) {
                throw new AlertDecodeException("alert " + id() + " has an empty value, not a JSON document");
            }
            return tree;
        } catch (IOException exc) {
            throw new AlertDecodeException("alert " + id() + " is not a JSON document: " + exc.getMessage(), exc);
        }
    }

    /**
     * The contract's message this alert reads.
     *
     * @return the {@code Alert}
     */
    public org.alertsidecar.v1.Alert toProto() {
        return message;
    }

    @Override
    public String toString() {
        return "Alert(" + id() + ", " + contentType() + ", " + message.getValue().size() + " bytes, attempt "
                + attempt() + ")";
    }
}
