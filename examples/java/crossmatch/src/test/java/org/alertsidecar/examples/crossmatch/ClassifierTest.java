package org.alertsidecar.examples.crossmatch;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** Each rule of {@link Classifier}, and the order they are applied in. */
class ClassifierTest {
    /** A catalogue of one source of each kind at dec 0, RA 10, 20, ..., and a galaxy with a star 0.8" off. */
    private static final Catalog CATALOG = new Catalog(8);
    private static final SkyIndex INDEX;

    static {
        CATALOG.add(10, 0, "star", SourceType.STAR, 0);
        CATALOG.add(20, 0, "var", SourceType.VARIABLE_STAR, 0);
        CATALOG.add(30, 0, "gal", SourceType.GALAXY, 5.0);
        CATALOG.add(40, 0, "agn", SourceType.AGN, 0);
        CATALOG.add(50, 0, "qso", SourceType.QSO, 0);
        CATALOG.add(60, 0, "other", SourceType.OTHER, 0);
        CATALOG.add(70, 0, "gal2", SourceType.GALAXY, 5.0);
        CATALOG.add(70, 0.8 / 3600, "star2", SourceType.STAR, 0);
        INDEX = new SkyIndex(CATALOG);
    }

    private static String classify(double ra, double eastArcsec, double northArcsec) {
        Matches matches = INDEX.query(ra + eastArcsec / 3600, northArcsec / 3600, 3.0, new Matches());
        return Classifier.classify(CATALOG, matches);
    }

    @Test
    void rules() {
        assertEquals(Classifier.ORPHAN, classify(15, 0, 0));
        assertEquals(Classifier.VARIABLE_STAR, classify(10, 0.9, 0));
        assertEquals(Classifier.VARIABLE_STAR, classify(20, 0, -0.3));
        assertEquals(Classifier.UNCLEAR, classify(10, 1.2, 0)); // a star, too far to be it
        assertEquals(Classifier.NUCLEAR_TRANSIENT, classify(30, 0.3, 0.3));
        assertEquals(Classifier.SUPERNOVA_CANDIDATE, classify(30, 2.0, 0));
        assertEquals(Classifier.AGN, classify(40, 0, 0.9));
        assertEquals(Classifier.AGN, classify(50, 0.5, 0.5));
        assertEquals(Classifier.UNCLEAR, classify(40, 0, 1.1));
        assertEquals(Classifier.UNCLEAR, classify(60, 0, 0.1));
    }

    @Test
    void theNearestDecidesBetweenAStarAndAGalaxy() {
        assertEquals(Classifier.VARIABLE_STAR, classify(70, 0, 0.6)); // star2 0.2" away, the galaxy 0.6"
        assertEquals(Classifier.NUCLEAR_TRANSIENT, classify(70, 0, 0.3)); // the galaxy nearer, within 0.5"
        assertEquals(Classifier.SUPERNOVA_CANDIDATE, classify(70, 0, -1.0)); // star2 1.8" away, the galaxy 1"
    }
}
