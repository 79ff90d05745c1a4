package org.alertsidecar.worker;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * One record the worker asks the sidecar to produce: the contract's {@code AlertOutput}.
 *
 * <p>Immutable: {@link #key(String)}, {@link #header(String, String)}, {@link #route(String)} and
 * {@link #contentType(String)} return a changed copy.
 *
 * <pre>{@code
 * Output.forward()                                   // the input alert itself, bytes untouched
 * Output.of(bytes).key("obj-1").route("side")        // new bytes (application/octet-stream)
 * Output.json("{\"id\": 1}").header("x-class", "sn") // a JSON document
 * }</pre>
 *
 * <p>The route names the output buffer: {@code ""} is the default one (the sidecar's {@code --out});
 * any other name must be declared with {@link AlertWorkerServer.Builder#routes(String...)}.
 */
public final class Output {
    private final byte[] value;
    private final byte[] key;
    private final String contentType;
    private final List<Header> headers;
    private final String route;
    private final boolean forwardInput;

    private Output(byte[] value, byte[] key, String contentType, List<Header> headers, String route,
                   boolean forwardInput) {
        this.value = value;
        this.key = key;
        this.contentType = contentType;
        this.headers = headers;
        this.route = route;
        this.forwardInput = forwardInput;
    }

    /**
     * Produce the input alert itself (its key, value, content type and headers) without sending its
     * bytes back. Headers added with {@link #header} follow the input's own.
     *
     * @return the output
     */
    public static Output forward() {
        return new Output(new byte[0], null, "", List.of(), "", true);
    }

    /**
     * Produce new bytes, of content type {@code application/octet-stream} unless
     * {@link #contentType(String)} says otherwise.
     *
     * @param value the record value, copied
     * @return the output
     */
    public static Output of(byte[] value) {
        return new Output(Objects.requireNonNull(value, "Output.of(value)").clone(), null,
                ContentTypes.OCTET_STREAM, List.of(), "", false);
    }

    /**
     * Produce a JSON document ({@code application/json}), written as it is.
     *
     * @param json the document's text; checked to be one JSON value
     * @return the output
     * @throws IllegalArgumentException if the text is not JSON
     */
    public static Output json(String json) {
        Objects.requireNonNull(json, "Output.json(text)");
        try {
            Json.MAPPER.readTree(json);
        } catch (JsonProcessingException exc) {
            throw new IllegalArgumentException("Output.json was given text that is not JSON: "
                    + exc.getOriginalMessage(), exc);
        }
        return new Output(json.getBytes(StandardCharsets.UTF_8), null, ContentTypes.JSON, List.of(), "", false);
    }

    /**
     * Produce a JSON document ({@code application/json}) from a Jackson tree. Integers are written
     * exactly, whatever their size.
     *
     * @param json the document
     * @return the output
     */
    public static Output json(JsonNode json) {
        return new Output(Json.write(Objects.requireNonNull(json, "Output.json(tree)")), null,
                ContentTypes.JSON, List.of(), "", false);
    }

    /**
     * This output with a record key.
     *
     * @param key the key's bytes, copied
     * @return the changed copy
     * @throws IllegalStateException for an output that forwards the input, whose key it keeps
     */
    public Output key(byte[] key) {
        requireOwnValue("key");
        return new Output(value, Objects.requireNonNull(key, "key").clone(), contentType, headers, route, false);
    }

    /**
     * This output with a record key given as text (UTF-8).
     *
     * @param key the key
     * @return the changed copy
     */
    public Output key(String key) {
        return key(Objects.requireNonNull(key, "key").getBytes(StandardCharsets.UTF_8));
    }

    /**
     * This output with one more header (after those it has).
     *
     * @param name the header's name
     * @param value its value, UTF-8
     * @return the changed copy
     */
    public Output header(String name, String value) {
        return header(Header.of(name, value));
    }

    /**
     * This output with one more header (after those it has).
     *
     * @param name the header's name
     * @param value its value, copied
     * @return the changed copy
     */
    public Output header(String name, byte[] value) {
        return header(Header.of(name, value));
    }

    /**
     * This output with one more header (after those it has).
     *
     * @param header the header
     * @return the changed copy
     */
    public Output header(Header header) {
        List<Header> more = new ArrayList<>(headers);
        more.add(Objects.requireNonNull(header, "header"));
        return new Output(value, key, contentType, Collections.unmodifiableList(more), route, forwardInput);
    }

    /**
     * This output sent to another route than the default {@code ""}.
     *
     * @param route a route declared with {@link AlertWorkerServer.Builder#routes(String...)}
     * @return the changed copy
     */
    public Output route(String route) {
        return new Output(value, key, contentType, headers, Objects.requireNonNull(route, "route"), forwardInput);
    }

    /**
     * This output with another content type.
     *
     * @param contentType what the value holds, as a media type
     * @return the changed copy
     * @throws IllegalStateException for an output that forwards the input, whose type it keeps
     */
    public Output contentType(String contentType) {
        requireOwnValue("content type");
        return new Output(value, key, Objects.requireNonNull(contentType, "contentType"), headers, route, false);
    }

    private void requireOwnValue(String what) {
        if (forwardInput) {
            throw new IllegalStateException("an Output that forwards the input alert keeps the input's " + what
                    + "; use Output.of(bytes) to produce new bytes");
        }
    }

    /**
     * Whether this output produces the input alert itself.
     *
     * @return true for {@link #forward()}
     */
    public boolean forwardsInput() {
        return forwardInput;
    }

    /**
     * The record value (empty for a forwarded input).
     *
     * @return a copy of the bytes
     */
    public byte[] value() {
        return value.clone();
    }

    /**
     * The record key, null for none.
     *
     * @return a copy of the key, or null
     */
    public byte[] keyBytes() {
        return key == null ? null : key.clone();
    }

    /**
     * What the value holds ({@code ""} for a forwarded input).
     *
     * @return the content type
     */
    public String contentType() {
        return contentType;
    }

    /**
     * The headers added to the record, in order.
     *
     * @return an unmodifiable list
     */
    public List<Header> headers() {
        return headers;
    }

    /**
     * The route: {@code ""} for the default output buffer.
     *
     * @return the route name
     */
    public String route() {
        return route;
    }

    /**
     * The contract's message for this output.
     *
     * @return the {@code AlertOutput}
     */
    public org.alertsidecar.v1.AlertOutput toProto() {
        org.alertsidecar.v1.AlertOutput.Builder out = org.alertsidecar.v1.AlertOutput.newBuilder().setRoute(route);
        if (forwardInput) {
            out.setForwardInput(true);
        } else {
            out.setValue(com.google.protobuf.ByteString.copyFrom(value)).setContentType(contentType);
            if (key != null) {
                out.setKey(com.google.protobuf.ByteString.copyFrom(key));
            }
        }
        for (Header header : headers) {
            out.addHeaders(org.alertsidecar.v1.Header.newBuilder().setKey(header.name())
                    .setValue(com.google.protobuf.ByteString.copyFrom(header.rawValue())));
        }
        return out.build();
    }

    @Override
    public String toString() {
        String what = forwardInput ? "forward" : value.length + " bytes of " + contentType;
        return "Output(" + what + (route.isEmpty() ? "" : ", route=" + route) + ")";
    }
}
