package org.alertsidecar.worker;

import java.util.Locale;

/** The media types of the contract's {@code Alert.content_type} and {@code WorkerDescription.accepts}. */
public final class ContentTypes {
    /** Any form: the sidecar passes every alert as it is. The default of {@code accepts}. */
    public static final String ANY = "*/*";
    /** Raw bytes the sidecar knows nothing of. */
    public static final String OCTET_STREAM = "application/octet-stream";
    /** A JSON document; Avro alerts decoded by the sidecar come in this form. */
    public static final String JSON = "application/json";
    /** Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the Avro body (Rubin). */
    public static final String AVRO_CONFLUENT = "application/vnd.apache.avro+confluent";
    /** An Avro Object Container File with its schema (ZTF). */
    public static final String AVRO_OCF = "application/vnd.apache.avro.ocf";

    private ContentTypes() {
    }

    /**
     * The bare media type of a content type: parameters dropped, lower case.
     *
     * @param contentType e.g. {@code "Application/JSON; charset=utf-8"}
     * @return e.g. {@code "application/json"}
     */
    public static String mediaType(String contentType) {
        int semicolon = contentType.indexOf(';');
        String bare = semicolon < 0 ? contentType : contentType.substring(0, semicolon);
        return bare.strip().toLowerCase(Locale.ROOT);
    }
}
