package org.alertsidecar.examples.crossmatch;

import java.util.Locale;

/** What a catalogue source is, as far as classifying a transient next to it goes. */
public enum SourceType {
    /** A star not known to vary. */
    STAR("star"),
    /** A known variable star. */
    VARIABLE_STAR("variable-star"),
    /** A galaxy, with its radius in the catalogue. */
    GALAXY("galaxy"),
    /** An active galactic nucleus. */
    AGN("agn"),
    /** A quasar. */
    QSO("qso"),
    /** Anything else the catalogue lists. */
    OTHER("other");

    private static final SourceType[] VALUES = values();

    private final String label;

    SourceType(String label) {
        this.label = label;
    }

    /**
     * The name written in catalogues and outputs.
     *
     * @return e.g. {@code "variable-star"}
     */
    public String label() {
        return label;
    }

    /**
     * Whether the source is a point source that is a star.
     *
     * @return true for stars and variable stars
     */
    public boolean isStellar() {
        return this == STAR || this == VARIABLE_STAR;
    }

    /**
     * Whether the source is an active nucleus.
     *
     * @return true for AGN and QSOs
     */
    public boolean isActiveNucleus() {
        return this == AGN || this == QSO;
    }

    static SourceType ofCode(byte code) {
        return VALUES[code];
    }

    /**
     * The type a catalogue's text names (case-insensitive; {@code vs}, {@code variable} and
     * {@code quasar} too).
     *
     * @param text the catalogue's type column
     * @return the type; {@link #OTHER} for anything not listed
     */
    public static SourceType parse(String text) {
        switch (text.strip().toLowerCase(Locale.ROOT)) {
            case "star":
                return STAR;
            case "variable-star":
            case "variable_star":
            case "variable":
            case "vs":
                return VARIABLE_STAR;
            case "galaxy":
                return GALAXY;
            case "agn":
                return AGN;
            case "qso":
            case "quasar":
                return QSO;
            default:
                return OTHER;
        }
    }
}
