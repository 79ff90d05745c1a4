package org.alertsidecar.worker;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Objects;

/** A Kafka record header: a name and uninterpreted bytes. Kafka allows a name to repeat. */
public final class Header {
    private final String name;
    private final byte[] value;

    private Header(String name, byte[] value) {
        this.name = Objects.requireNonNull(name, "a header name");
        this.value = Objects.requireNonNull(value, "a header value").clone();
    }

    /**
     * A header of bytes.
     *
     * @param name the header's name
     * @param value its value, copied
     * @return the header
     */
    public static Header of(String name, byte[] value) {
        return new Header(name, value);
    }

    /**
     * A header of text, encoded as UTF-8.
     *
     * @param name the header's name
     * @param value its value
     * @return the header
     */
    public static Header of(String name, String value) {
        return new Header(name, Objects.requireNonNull(value, "a header value").getBytes(StandardCharsets.UTF_8));
    }

    /**
     * The header's name.
     *
     * @return the name
     */
    public String name() {
        return name;
    }

    /**
     * The header's value.
     *
     * @return a copy of its bytes
     */
    public byte[] value() {
        return value.clone();
    }

    /**
     * The header's value read as UTF-8 text.
     *
     * @return the text
     */
    public String valueAsString() {
        return new String(value, StandardCharsets.UTF_8);
    }

    byte[] rawValue() {
        return value;
    }

    @Override
    public boolean equals(Object other) {
        return other instanceof Header h && h.name.equals(name) && Arrays.equals(h.value, value);
    }

    @Override
    public int hashCode() {
        return 31 * name.hashCode() + Arrays.hashCode(value);
    }

    @Override
    public String toString() {
        return name + "=" + valueAsString();
    }
}
