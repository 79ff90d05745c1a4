package org.alertsidecar.examples.crossmatch;

/**
 * What a transient probably is, from the catalogue sources around it: a few rules in the spirit of
 * Lasair's Sherlock, applied in this order to the sources within the search radius.
 *
 * <ol>
 *   <li>none: {@code orphan} (nothing known there: a hostless transient, or a host too faint for the
 *       catalogue);</li>
 *   <li>the nearest is a star or a variable star within {@value #STAR_ARCSEC}": {@code variable-star};</li>
 *   <li>an AGN or a QSO within {@value #AGN_ARCSEC}": {@code agn};</li>
 *   <li>a galaxy within {@value #NUCLEAR_ARCSEC}" of its centre: {@code nuclear-transient} (a tidal
 *       disruption, a flaring nucleus, or a supernova too close to the core to tell apart);</li>
 *   <li>a galaxy whose radius reaches the transient: {@code supernova-candidate};</li>
 *   <li>otherwise: {@code unclear} (sources nearby, none that explains it).</li>
 * </ol>
 */
public final class Classifier {
    /**
     * A variable star's difference-image source sits on the star: Rubin's PSF is about 0.7" FWHM, and 1"
     * leaves room for the proper motion and astrometry of older catalogues.
     */
    public static final double STAR_ARCSEC = 1.0;
    /** An active nucleus is a point source: the same allowance as for a star. */
    public static final double AGN_ARCSEC = 1.0;
    /** Within about one PSF sigma of a galaxy's centre a transient cannot be told from its nucleus. */
    public static final double NUCLEAR_ARCSEC = 0.5;

    /** No source in the search radius. */
    public static final String ORPHAN = "orphan";
    /** On a star. */
    public static final String VARIABLE_STAR = "variable-star";
    /** On an active nucleus. */
    public static final String AGN = "agn";
    /** On a galaxy's centre. */
    public static final String NUCLEAR_TRANSIENT = "nuclear-transient";
    /** Inside a galaxy, off its centre. */
    public static final String SUPERNOVA_CANDIDATE = "supernova-candidate";
    /** Near sources, none of which explains it. */
    public static final String UNCLEAR = "unclear";

    private Classifier() {
    }

    /**
     * Classify a transient by the sources a cone search found around it.
     *
     * @param catalog the catalogue the rows are of
     * @param matches the sources, nearest first
     * @return one of the classes above
     */
    public static String classify(Catalog catalog, Matches matches) {
        int count = matches.size();
        if (count == 0) {
            return ORPHAN;
        }
        if (catalog.type(matches.row(0)).isStellar() && matches.separationArcsec(0) <= STAR_ARCSEC) {
            return VARIABLE_STAR;
        }
        for (int i = 0; i < count; i++) {
            if (catalog.type(matches.row(i)).isActiveNucleus() && matches.separationArcsec(i) <= AGN_ARCSEC) {
                return AGN;
            }
        }
        for (int i = 0; i < count; i++) {
            if (catalog.type(matches.row(i)) == SourceType.GALAXY && matches.separationArcsec(i) <= NUCLEAR_ARCSEC) {
                return NUCLEAR_TRANSIENT;
            }
        }
        for (int i = 0; i < count; i++) {
            int row = matches.row(i);
            if (catalog.type(row) == SourceType.GALAXY && matches.separationArcsec(i) <= catalog.radiusArcsec(row)) {
                return SUPERNOVA_CANDIDATE;
            }
        }
        return UNCLEAR;
    }
}
