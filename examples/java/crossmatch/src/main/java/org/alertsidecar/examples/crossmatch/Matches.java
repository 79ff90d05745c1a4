package org.alertsidecar.examples.crossmatch;

import java.util.Arrays;

/**
 * The sources a {@link SkyIndex} query found, nearest first. Reused from one query to the next, so that a
 * query allocates nothing: keep one per thread.
 */
public final class Matches {
    private int[] rows = new int[16];
    private double[] chord2 = new double[16];
    private int count;

    void clear() {
        count = 0;
    }

    void add(int row, double squaredChord) {
        if (count == rows.length) {
            rows = Arrays.copyOf(rows, count * 2);
            chord2 = Arrays.copyOf(chord2, count * 2);
        }
        rows[count] = row;
        chord2[count] = squaredChord;
        count++;
    }

    /** Insertion sort by distance: a query finds a handful of sources at most. */
    void sortByDistance() {
        for (int i = 1; i < count; i++) {
            int row = rows[i];
            double d = chord2[i];
            int j = i - 1;
            while (j >= 0 && (chord2[j] > d || (chord2[j] == d && rows[j] > row))) {
                rows[j + 1] = rows[j];
                chord2[j + 1] = chord2[j];
                j--;
            }
            rows[j + 1] = row;
            chord2[j + 1] = d;
        }
    }

    /**
     * How many sources were found.
     *
     * @return the count
     */
    public int size() {
        return count;
    }

    /**
     * The catalogue row of the i-th nearest source.
     *
     * @param i 0 for the nearest
     * @return the row in the {@link Catalog}
     */
    public int row(int i) {
        if (i >= count) {
            throw new IndexOutOfBoundsException(i + " of " + count + " matches");
        }
        return rows[i];
    }

    /**
     * The angular separation of the i-th nearest source.
     *
     * @param i 0 for the nearest
     * @return arcseconds
     */
    public double separationArcsec(int i) {
        if (i >= count) {
            throw new IndexOutOfBoundsException(i + " of " + count + " matches");
        }
        return SkyIndex.chordToArcsec(chord2[i]);
    }
}
