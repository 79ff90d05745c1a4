package org.alertsidecar.examples.crossmatch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The zone index finds exactly what a brute-force search over every source finds, in the same order. */
class SkyIndexTest {
    /** Sources spread over the sky, plus dense clumps at both poles and across RA = 0/360. */
    static Catalog catalog(SplittableRandom random) {
        Catalog catalog = Catalog.generate(20_000, 7);
        double[][] clumps = {{0.0, 90.0}, {0.0, -90.0}, {0.0, 0.0}, {359.9999, 45.0}, {0.0001, -60.0}};
        for (double[] clump : clumps) {
            for (int i = 0; i < 400; i++) {
                double dec = Math.max(-90, Math.min(90, clump[1] + (random.nextDouble() - 0.5) * 0.02));
                double ra = ((clump[0] + (random.nextDouble() - 0.5) * (Math.abs(dec) > 89 ? 360 : 0.02)) % 360 + 360) % 360;
                catalog.add(ra, dec, "c" + i, SourceType.STAR, 0);
            }
        }
        return catalog;
    }

    static List<double[]> bruteForce(Catalog catalog, double ra, double dec, double radiusArcsec) {
        List<double[]> found = new ArrayList<>();
        for (int row = 0; row < catalog.size(); row++) {
            if (Math.abs(catalog.dec(row) - dec) * 3600 > radiusArcsec + 1e-3) {
                continue; // a separation is at least the difference in declination: only saves time
            }
            double sep = haversineArcsec(ra, dec, catalog.ra(row), catalog.dec(row));
            if (sep <= radiusArcsec) {
                found.add(new double[] {row, sep});
            }
        }
        found.sort(Comparator.comparingDouble((double[] m) -> m[1]).thenComparingDouble(m -> m[0]));
        return found;
    }

    /** An independent formula: the haversine on right ascension and declination. */
    static double haversineArcsec(double ra1, double dec1, double ra2, double dec2) {
        double p1 = Math.toRadians(dec1);
        double p2 = Math.toRadians(dec2);
        double h = Math.pow(Math.sin((p2 - p1) / 2), 2)
                + Math.cos(p1) * Math.cos(p2) * Math.pow(Math.sin(Math.toRadians(ra2 - ra1) / 2), 2);
        return Math.toDegrees(2 * Math.asin(Math.min(1, Math.sqrt(h)))) * 3600;
    }

    @Test
    void matchesBruteForceEverywhere() {
        SplittableRandom random = new SplittableRandom(3);
        Catalog catalog = catalog(random);
        for (double zoneHeight : new double[] {SkyIndex.DEFAULT_ZONE_HEIGHT_DEG, 10.0 / 3600, 2.0}) {
            SkyIndex index = new SkyIndex(catalog, zoneHeight);
            Matches matches = new Matches();
            int nonEmpty = 0;
            for (int q = 0; q < 3000; q++) {
                double ra;
                double dec;
                double radius = q % 3 == 0 ? 2.0 : q % 3 == 1 ? 30.0 : 300.0;
                if (q % 2 == 0) { // on the clumps: the poles and RA 0/360
                    int row = catalog.size() - 1 - random.nextInt(2000);
                    ra = (catalog.ra(row) + (random.nextDouble() - 0.5) * 0.01 + 360) % 360;
                    dec = Math.max(-90, Math.min(90, catalog.dec(row) + (random.nextDouble() - 0.5) * 0.01));
                } else {
                    ra = 360 * random.nextDouble();
                    dec = Math.toDegrees(Math.asin(2 * random.nextDouble() - 1));
                }
                index.query(ra, dec, radius, matches);
                List<double[]> expected = bruteForce(catalog, ra, dec, radius);
                // A source within rounding of the edge may fall either side: compare away from it.
                expected.removeIf(m -> Math.abs(m[1] - radius) < 1e-6);
                List<Integer> got = new ArrayList<>();
                for (int i = 0; i < matches.size(); i++) {
                    if (Math.abs(matches.separationArcsec(i) - radius) >= 1e-6) {
                        got.add(matches.row(i));
                    }
                }
                // The same sources; the order compared by distance, since sources at one point (many sit
                // on the pole itself) tie, and rounding orders ties either way.
                assertEquals(new java.util.TreeSet<>(expected.stream().map(m -> (int) m[0]).toList()),
                        new java.util.TreeSet<>(got), "query (" + ra + ", " + dec + ") r=" + radius + " zone height "
                                + zoneHeight);
                for (int i = 0; i < matches.size(); i++) {
                    int row = matches.row(i);
                    double sep = haversineArcsec(ra, dec, catalog.ra(row), catalog.dec(row));
                    assertEquals(sep, matches.separationArcsec(i), 1e-6);
                    if (i > 0) {
                        assertTrue(matches.separationArcsec(i) >= matches.separationArcsec(i - 1), "nearest first");
                    }
                }
                nonEmpty += matches.size() > 0 ? 1 : 0;
            }
            assertTrue(nonEmpty > 1000, "the queries found sources (" + nonEmpty + ")");
        }
    }

    @Test
    void acrossTheWrapAndThePole() {
        Catalog catalog = new Catalog(4);
        catalog.add(359.9999, 0.0, "west", SourceType.STAR, 0); // 0.36" west of RA 0
        catalog.add(0.0001, 0.0, "east", SourceType.STAR, 0);
        catalog.add(90.0, 89.9999, "north-a", SourceType.STAR, 0); // 0.36" from the pole
        catalog.add(270.0, 89.9999, "north-b", SourceType.STAR, 0);
        SkyIndex index = new SkyIndex(catalog);
        Matches matches = index.query(0.0, 0.0, 1.0, new Matches());
        assertEquals(2, matches.size());
        assertEquals(0.36, matches.separationArcsec(0), 1e-9);
        matches = index.query(180.0, 90.0, 0.5, new Matches());
        assertEquals(2, matches.size());
        matches = index.query(0.0, 89.9999, 0.7, new Matches()); // 0.51" from each
        assertEquals(2, matches.size());
        assertEquals(0.0, index.query(10.0, 0.0, 1.0, new Matches()).size());
    }
}
