package org.alertsidecar.examples.crossmatch;

import java.util.Arrays;

/**
 * A declination-zone index of a {@link Catalog} (Gray, Nieto-Santisteban and Szalay 2006, "The Zones
 * Algorithm for Finding Points-Near-a-Point or Cross-Matching Spatial Datasets"): the sky is cut into
 * zones of fixed declination height, and the sources of each zone are kept sorted by right ascension in
 * primitive arrays. A cone search visits the zones its declination range covers and, in each, the sources
 * of its right ascension range, found by binary search; the exact distance of those few decides.
 *
 * <p>Distances are computed between unit vectors, so they are right everywhere: near the poles (where a
 * cone covers every right ascension) and across RA = 0/360 (searched as two ranges). The separation is
 * {@code 2 asin(chord / 2)}, exact for small angles where the law of cosines loses precision.
 *
 * <p>Thread-safe for queries once built.
 */
public final class SkyIndex {
    /**
     * Zone height. Cone searches of arcseconds then touch one or two zones, and a zone of the whole sky's
     * million sources holds about a hundred, so a binary search takes seven steps.
     */
    public static final double DEFAULT_ZONE_HEIGHT_DEG = 1.0 / 60.0;

    private static final double ARCSEC_PER_RADIAN = 180.0 / Math.PI * 3600.0;
    /**
     * Widens the right-ascension window of a cone by about 4 milliarcseconds against rounding in its
     * trigonometry; sources inside the window are checked by their exact distance anyway.
     */
    private static final double RA_MARGIN_DEG = 1e-6;

    private final Catalog catalog;
    private final double zoneHeight;
    private final int zones;
    private final int[] zoneStart;
    private final double[] ra;
    private final double[] x;
    private final double[] y;
    private final double[] z;
    private final int[] row;

    /**
     * Index a catalogue with the default zone height.
     *
     * @param catalog the catalogue
     */
    public SkyIndex(Catalog catalog) {
        this(catalog, DEFAULT_ZONE_HEIGHT_DEG);
    }

    /**
     * Index a catalogue.
     *
     * @param catalog the catalogue
     * @param zoneHeightDeg the declination height of a zone, degrees
     */
    public SkyIndex(Catalog catalog, double zoneHeightDeg) {
        this.catalog = catalog;
        this.zoneHeight = zoneHeightDeg;
        this.zones = (int) Math.ceil(180.0 / zoneHeightDeg);
        int n = catalog.size();
        // Counting sort by zone, then each zone by right ascension.
        int[] zoneOf = new int[n];
        zoneStart = new int[zones + 1];
        for (int i = 0; i < n; i++) {
            zoneOf[i] = zone(catalog.dec(i));
            zoneStart[zoneOf[i] + 1]++;
        }
        for (int k = 0; k < zones; k++) {
            zoneStart[k + 1] += zoneStart[k];
        }
        int[] fill = Arrays.copyOf(zoneStart, zones);
        int[] order = new int[n];
        for (int i = 0; i < n; i++) {
            order[fill[zoneOf[i]]++] = i;
        }
        long[] keys = new long[0];
        for (int k = 0; k < zones; k++) {
            int from = zoneStart[k];
            int count = zoneStart[k + 1] - from;
            if (count < 2) {
                continue;
            }
            // Sort the zone's rows by right ascension as primitive longs: the RA (its bits order as the
            // number does, for RA >= 0) would not leave room for the row, so its top 31 bits of a
            // fixed-point form do, and an insertion pass then orders what that rounding tied.
            if (keys.length < count) {
                keys = new long[Math.max(count, keys.length * 2)];
            }
            for (int j = 0; j < count; j++) {
                long fixed = (long) (catalog.ra(order[from + j]) / 360.0 * (1L << 31));
                keys[j] = Math.min(fixed, (1L << 31) - 1) << 32 | order[from + j];
            }
            Arrays.sort(keys, 0, count);
            for (int j = 0; j < count; j++) {
                order[from + j] = (int) keys[j];
            }
            for (int j = from + 1; j < from + count; j++) {
                int moving = order[j];
                double value = catalog.ra(moving);
                int i = j - 1;
                while (i >= from && catalog.ra(order[i]) > value) {
                    order[i + 1] = order[i];
                    i--;
                }
                order[i + 1] = moving;
            }
        }
        ra = new double[n];
        x = new double[n];
        y = new double[n];
        z = new double[n];
        row = order;
        for (int i = 0; i < n; i++) {
            int source = order[i];
            double a = Math.toRadians(catalog.ra(source));
            double d = Math.toRadians(catalog.dec(source));
            ra[i] = catalog.ra(source);
            x[i] = Math.cos(d) * Math.cos(a);
            y[i] = Math.cos(d) * Math.sin(a);
            z[i] = Math.sin(d);
        }
    }

    /**
     * The catalogue indexed.
     *
     * @return the catalogue
     */
    public Catalog catalog() {
        return catalog;
    }

    private int zone(double decDeg) {
        return Math.min(zones - 1, Math.max(0, (int) Math.floor((decDeg + 90.0) / zoneHeight)));
    }

    /**
     * Every source within {@code radiusArcsec} of a position, nearest first.
     *
     * @param raDeg right ascension of the centre, degrees
     * @param decDeg declination of the centre, degrees
     * @param radiusArcsec the cone's radius, arcseconds
     * @param out where the sources go (cleared first)
     * @return {@code out}
     */
    public Matches query(double raDeg, double decDeg, double radiusArcsec, Matches out) {
        out.clear();
        double radiusDeg = radiusArcsec / 3600.0;
        double a = Math.toRadians(raDeg);
        double d = Math.toRadians(decDeg);
        double cx = Math.cos(d) * Math.cos(a);
        double cy = Math.cos(d) * Math.sin(a);
        double cz = Math.sin(d);
        double halfChord = Math.sin(Math.toRadians(radiusDeg) / 2.0);
        double maxChord2 = 4.0 * halfChord * halfChord;
        int firstZone = zone(decDeg - radiusDeg);
        int lastZone = zone(decDeg + radiusDeg);
        double halfWidth;
        if (90.0 - Math.abs(decDeg) <= radiusDeg) {
            halfWidth = 180.0; // the cone holds a pole: every right ascension
        } else {
            // The widest right-ascension extent of a small circle of radius r about declination d.
            double sine = Math.sin(Math.toRadians(radiusDeg)) / Math.cos(d);
            halfWidth = sine >= 1.0 ? 180.0 : Math.toDegrees(Math.asin(sine)) + RA_MARGIN_DEG;
        }
        double centre = ((raDeg % 360.0) + 360.0) % 360.0;
        for (int k = firstZone; k <= lastZone; k++) {
            if (halfWidth >= 180.0) {
                scan(k, 0.0, 360.0, cx, cy, cz, maxChord2, out);
            } else {
                double low = centre - halfWidth;
                double high = centre + halfWidth;
                if (low < 0.0) {
                    scan(k, low + 360.0, 360.0, cx, cy, cz, maxChord2, out);
                    scan(k, 0.0, high, cx, cy, cz, maxChord2, out);
                } else if (high >= 360.0) {
                    scan(k, low, 360.0, cx, cy, cz, maxChord2, out);
                    scan(k, 0.0, high - 360.0, cx, cy, cz, maxChord2, out);
                } else {
                    scan(k, low, high, cx, cy, cz, maxChord2, out);
                }
            }
        }
        out.sortByDistance();
        return out;
    }

    private void scan(int k, double low, double high, double cx, double cy, double cz, double maxChord2, Matches out) {
        int end = zoneStart[k + 1];
        for (int i = firstAtLeast(zoneStart[k], end, low); i < end && ra[i] <= high; i++) {
            double dx = x[i] - cx;
            double dy = y[i] - cy;
            double dz = z[i] - cz;
            double chord2 = dx * dx + dy * dy + dz * dz;
            if (chord2 <= maxChord2) {
                out.add(row[i], chord2);
            }
        }
    }

    private int firstAtLeast(int from, int to, double value) {
        int lo = from;
        int hi = to;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (ra[mid] < value) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    /**
     * The angular separation of two positions, from the chord between their unit vectors: right for
     * every pair, near the poles, across RA = 0/360 and for tiny angles alike.
     *
     * @param ra1 right ascension of the first, degrees
     * @param dec1 declination of the first, degrees
     * @param ra2 right ascension of the second, degrees
     * @param dec2 declination of the second, degrees
     * @return arcseconds
     */
    public static double separationArcsec(double ra1, double dec1, double ra2, double dec2) {
        double a1 = Math.toRadians(ra1);
        double d1 = Math.toRadians(dec1);
        double a2 = Math.toRadians(ra2);
        double d2 = Math.toRadians(dec2);
        double dx = Math.cos(d1) * Math.cos(a1) - Math.cos(d2) * Math.cos(a2);
        double dy = Math.cos(d1) * Math.sin(a1) - Math.cos(d2) * Math.sin(a2);
        double dz = Math.sin(d1) - Math.sin(d2);
        return chordToArcsec(dx * dx + dy * dy + dz * dz);
    }

    static double chordToArcsec(double chord2) {
        return 2.0 * Math.asin(Math.min(1.0, Math.sqrt(chord2) / 2.0)) * ARCSEC_PER_RADIAN;
    }
}
