package org.alertsidecar.worker;

import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;

/**
 * A bound on what a few bytes of Avro can make a reader build: items that take no bytes.
 *
 * <p>An Avro array is a series of blocks, each a count and that many items. An item whose type
 * takes no bytes ({@code null}, a {@code fixed} of size 0, a record of only such fields) costs
 * nothing but its share of the count, so a count of a few bytes can claim billions of them, and
 * Avro's reader builds every one: 10^8 nulls in eight bytes end in an {@code OutOfMemoryError}.
 * No Rubin or ZTF schema has such an array, but a schema that does is not wrong, and a damaged
 * alert of it must be refused, not followed.
 *
 * <p>So for the schemas that can hold such items ({@link #holdsEmptyItems}, decided once per
 * schema), the body is walked first, building nothing, and refused when its arrays and maps claim
 * more items than one a byte of the body and {@link #ZERO_SIZE_ITEMS} more: every item of any other
 * type takes a byte at least. The Python SDK and the sidecar apply the same bound.
 */
final class EmptyItems {
    /** The items of a type that takes no bytes one body may hold beyond one item a byte. */
    static final long ZERO_SIZE_ITEMS = 65536;

    // By Avro's equality (a schema's hash is kept in it): the answer depends only on the schema's structure.
    private static final Map<Schema, Boolean> HOLDS = new ConcurrentHashMap<>();

    private EmptyItems() {
    }

    /** The body is not a value of the schema for another reason: left for Avro's reader to say so. */
    private static final class Ends extends Exception {
        private static final long serialVersionUID = 1L;

        Ends() {
            super(null, null, false, false);
        }
    }

    /**
     * Whether a schema has an array of items that take no bytes, or is itself such a type (a
     * container file's blocks count its records). A map's entries each write a key, so only arrays
     * are asked. Kept per schema.
     */
    static boolean holdsEmptyItems(Schema schema) {
        Boolean kept = HOLDS.get(schema);
        if (kept == null) {
            Map<Schema, Boolean> empty = new IdentityHashMap<>();
            kept = takesNoBytes(schema, empty) || hasEmptyArray(schema, empty, newSeen());
            if (HOLDS.size() > 256) {
                HOLDS.clear();  // a few schemas a stream: this only bounds a caller of ever new schemas
            }
            HOLDS.put(schema, kept);
        }
        return kept;
    }

    private static Set<Schema> newSeen() {
        return Collections.newSetFromMap(new IdentityHashMap<>());
    }

    /**
     * Whether every value of a type is written in no bytes. {@code known} holds the answer for each
     * record once found, so that a record named in several fields is asked once, and false for a
     * record still being asked: one that contains itself through its fields has no finite value.
     */
    private static boolean takesNoBytes(Schema schema, Map<Schema, Boolean> known) {
        switch (schema.getType()) {
            case NULL:
                return true;
            case FIXED:
                return schema.getFixedSize() == 0;
            case RECORD: {
                Boolean answer = known.get(schema);
                if (answer != null) {
                    return answer;
                }
                known.put(schema, false);
                boolean empty = true;
                for (Schema.Field field : schema.getFields()) {
                    if (!takesNoBytes(field.schema(), known)) {
                        empty = false;
                        break;
                    }
                }
                known.put(schema, empty);
                return empty;
            }
            default:
                return false;  // a union writes its branch, an enum its index, an array its counts
        }
    }

    private static boolean hasEmptyArray(Schema schema, Map<Schema, Boolean> empty, Set<Schema> seen) {
        switch (schema.getType()) {
            case ARRAY:
                return takesNoBytes(schema.getElementType(), empty)
                        || hasEmptyArray(schema.getElementType(), empty, seen);
            case MAP:
                return hasEmptyArray(schema.getValueType(), empty, seen);
            case UNION:
                for (Schema branch : schema.getTypes()) {
                    if (hasEmptyArray(branch, empty, seen)) {
                        return true;
                    }
                }
                return false;
            case RECORD:
                if (!seen.add(schema)) {
                    return false;
                }
                for (Schema.Field field : schema.getFields()) {
                    if (hasEmptyArray(field.schema(), empty, seen)) {
                        return true;
                    }
                }
                return false;
            default:
                return false;
        }
    }

    /**
     * Refuse a body whose arrays and maps claim more items than its length allows.
     *
     * @param data the bytes
     * @param start where the value begins
     * @param end the byte after the body
     * @param schema the writer schema
     * @throws AlertDecodeException for such a body; bytes that are not a value of the schema for
     *     another reason are left for the reader to refuse in its own words
     */
    static void check(byte[] data, int start, int end, Schema schema) {
        Walk walk = new Walk(data, start, end);
        try {
            walk.skip(schema);
        } catch (Ends | StackOverflowError exc) {
            // not this check's to say
        }
    }

    private static final class Walk {
        private final byte[] data;
        private final int start;
        private final int end;
        private final int length;
        private int pos;
        private long left;

        Walk(byte[] data, int start, int end) {
            this.data = data;
            this.start = start;
            this.pos = start;
            this.end = end;
            this.length = end - start;
            this.left = length + ZERO_SIZE_ITEMS;
        }

        long varint() throws Ends {
            long n = 0;
            int shift = 0;
            while (true) {
                if (pos >= end || shift > 63) {
                    throw new Ends();
                }
                int b = data[pos++] & 0xFF;
                n |= (long) (b & 0x7F) << shift;
                shift += 7;
                if ((b & 0x80) == 0) {
                    return (n >>> 1) ^ -(n & 1);
                }
            }
        }

        void advance(long n) throws Ends {
            if (n < 0 || n > end - pos) {
                throw new Ends();
            }
            pos += (int) n;
        }

        long items() throws Ends {
            long n = varint();
            if (n < 0) {
                n = -n;
                varint();  // the block's size in bytes
            }
            if (n < 0 || n > left) {  // n < 0: the count was the smallest long, its absolute value 2^63
                throw new AlertDecodeException("the Avro body claims a block of " + Long.toUnsignedString(n)
                        + " items at byte " + (pos - start) + ", more than a body of " + length + " bytes can hold (one item a byte and "
                        + ZERO_SIZE_ITEMS + " of a type that takes no bytes): the bytes are damaged");
            }
            left -= n;
            return n;
        }

        void skip(Schema schema) throws Ends {
            switch (schema.getType()) {
                case NULL:
                    return;
                case BOOLEAN:
                    advance(1);
                    return;
                case INT:
                case LONG:
                case ENUM:
                    varint();
                    return;
                case FLOAT:
                    advance(4);
                    return;
                case DOUBLE:
                    advance(8);
                    return;
                case STRING:
                case BYTES:
                    advance(varint());
                    return;
                case FIXED:
                    advance(schema.getFixedSize());
                    return;
                case RECORD:
                    for (Schema.Field field : schema.getFields()) {
                        skip(field.schema());
                    }
                    return;
                case UNION:
                    long branch = varint();
                    if (branch < 0 || branch >= schema.getTypes().size()) {
                        throw new Ends();
                    }
                    skip(schema.getTypes().get((int) branch));
                    return;
                case ARRAY:
                    for (long n = items(); n != 0; n = items()) {
                        for (long i = 0; i < n; i++) {
                            skip(schema.getElementType());
                        }
                    }
                    return;
                case MAP:
                    for (long n = items(); n != 0; n = items()) {
                        for (long i = 0; i < n; i++) {
                            advance(varint());
                            skip(schema.getValueType());
                        }
                    }
                    return;
                default:
                    throw new Ends();
            }
        }
    }
}
