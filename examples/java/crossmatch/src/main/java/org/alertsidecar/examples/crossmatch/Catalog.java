package org.alertsidecar.examples.crossmatch;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * A catalogue of sources held in columns of primitive arrays: no object per source, so that a million
 * sources take about 40 MB and load in about a second.
 *
 * <p>The CSV form has a header line and one source a line: {@code ra,dec,name,type,radius_arcsec}
 * (degrees, ICRS; the name without commas; the type as {@link SourceType#parse} reads it; the radius of a
 * galaxy in arcseconds, 0 for a point source). Lines starting with {@code #} are comments.
 */
public final class Catalog {
    /** The CSV header this class writes and expects. */
    public static final String HEADER = "ra,dec,name,type,radius_arcsec";

    private int size;
    private double[] ra;
    private double[] dec;
    private float[] radiusArcsec;
    private byte[] type;
    private byte[] nameBytes;
    private int[] nameStart;
    private int nameEnd;

    /**
     * An empty catalogue with room for {@code capacity} sources (it grows as needed).
     *
     * @param capacity the expected number of sources
     */
    public Catalog(int capacity) {
        int room = Math.max(16, capacity);
        ra = new double[room];
        dec = new double[room];
        radiusArcsec = new float[room];
        type = new byte[room];
        nameStart = new int[room + 1];
        nameBytes = new byte[room * 24];
    }

    /**
     * Add a source.
     *
     * @param raDeg right ascension, degrees, 0 to 360
     * @param decDeg declination, degrees, -90 to 90
     * @param name the source's name
     * @param sourceType what it is
     * @param radius a galaxy's radius in arcseconds, 0 for a point source
     * @return the source's row
     * @throws IllegalArgumentException for a position off the sky
     */
    public int add(double raDeg, double decDeg, String name, SourceType sourceType, double radius) {
        if (!(raDeg >= 0 && raDeg <= 360) || !(decDeg >= -90 && decDeg <= 90)) {
            throw new IllegalArgumentException("position (" + raDeg + ", " + decDeg + ") is not on the sky: ra is 0 to "
                    + "360 and dec -90 to 90 degrees");
        }
        if (size == ra.length) {
            int room = ra.length * 2;
            ra = Arrays.copyOf(ra, room);
            dec = Arrays.copyOf(dec, room);
            radiusArcsec = Arrays.copyOf(radiusArcsec, room);
            type = Arrays.copyOf(type, room);
            nameStart = Arrays.copyOf(nameStart, room + 1);
        }
        byte[] utf8 = name.getBytes(StandardCharsets.UTF_8);
        if (nameEnd + utf8.length > nameBytes.length) {
            nameBytes = Arrays.copyOf(nameBytes, Math.max(nameBytes.length * 2, nameEnd + utf8.length));
        }
        System.arraycopy(utf8, 0, nameBytes, nameEnd, utf8.length);
        ra[size] = raDeg == 360 ? 0 : raDeg;
        dec[size] = decDeg;
        radiusArcsec[size] = (float) radius;
        type[size] = (byte) sourceType.ordinal();
        nameStart[size] = nameEnd;
        nameEnd += utf8.length;
        nameStart[size + 1] = nameEnd;
        return size++;
    }

    /**
     * How many sources.
     *
     * @return the count
     */
    public int size() {
        return size;
    }

    /**
     * Right ascension of a source.
     *
     * @param row the source's row
     * @return degrees
     */
    public double ra(int row) {
        return ra[row];
    }

    /**
     * Declination of a source.
     *
     * @param row the source's row
     * @return degrees
     */
    public double dec(int row) {
        return dec[row];
    }

    /**
     * A galaxy's radius.
     *
     * @param row the source's row
     * @return arcseconds; 0 for a point source
     */
    public double radiusArcsec(int row) {
        return radiusArcsec[row];
    }

    /**
     * What a source is.
     *
     * @param row the source's row
     * @return its type
     */
    public SourceType type(int row) {
        return SourceType.ofCode(type[row]);
    }

    /**
     * A source's name.
     *
     * @param row the source's row
     * @return the name
     */
    public String name(int row) {
        return new String(nameBytes, nameStart[row], nameStart[row + 1] - nameStart[row], StandardCharsets.UTF_8);
    }

    /**
     * Read a catalogue from CSV.
     *
     * @param path the file
     * @return the catalogue
     * @throws IOException if it cannot be read
     * @throws IllegalArgumentException naming the line that is not a source
     */
    public static Catalog readCsv(Path path) throws IOException {
        long bytes = Files.size(path);
        Catalog catalog = new Catalog((int) Math.min(Integer.MAX_VALUE - 16, bytes / 48));
        try (BufferedReader reader = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
            String line;
            int number = 0;
            boolean header = false;
            while ((line = reader.readLine()) != null) {
                number++;
                if (line.isBlank() || line.startsWith("#")) {
                    continue;
                }
                if (!header) {
                    if (!line.strip().equals(HEADER)) {
                        throw new IllegalArgumentException(path + ":" + number + ": the first line must be the header '"
                                + HEADER + "', not '" + line + "'");
                    }
                    header = true;
                    continue;
                }
                catalog.addCsvLine(line, path, number);
            }
        }
        return catalog;
    }

    private void addCsvLine(String line, Path path, int number) {
        int c1 = line.indexOf(',');
        int c2 = c1 < 0 ? -1 : line.indexOf(',', c1 + 1);
        int c3 = c2 < 0 ? -1 : line.indexOf(',', c2 + 1);
        int c4 = c3 < 0 ? -1 : line.indexOf(',', c3 + 1);
        if (c4 < 0 || line.indexOf(',', c4 + 1) >= 0) {
            throw new IllegalArgumentException(path + ":" + number + ": a source has 5 columns (" + HEADER + "), not '"
                    + line + "'");
        }
        try {
            add(Double.parseDouble(line.substring(0, c1)), Double.parseDouble(line.substring(c1 + 1, c2)),
                    line.substring(c2 + 1, c3).strip(), SourceType.parse(line.substring(c3 + 1, c4)),
                    Double.parseDouble(line.substring(c4 + 1)));
        } catch (IllegalArgumentException exc) {
            throw new IllegalArgumentException(path + ":" + number + ": " + exc.getMessage() + " in '" + line + "'", exc);
        }
    }

    /**
     * Write the catalogue as CSV.
     *
     * @param path the file
     * @throws IOException if it cannot be written
     */
    public void writeCsv(Path path) throws IOException {
        try (BufferedWriter out = Files.newBufferedWriter(path, StandardCharsets.UTF_8)) {
            out.write(HEADER);
            out.newLine();
            for (int row = 0; row < size; row++) {
                out.write(ra[row] + "," + dec[row] + "," + name(row) + "," + type(row).label() + "," + radiusArcsec[row]);
                out.newLine();
            }
        }
    }

    /**
     * A catalogue of {@code count} sources spread evenly over the sky, the same for the same seed.
     *
     * <p>Mix of types: 55% stars, 10% variable stars, 30% galaxies (radii log-uniform from 1" to 15"),
     * 3% AGN, 2% QSOs. A made-up mix, not a survey's, only so that every classification occurs. Names are
     * IAU-style designations of the position ({@code ACX Jhhmmss.ss+ddmmss.s}).
     *
     * @param count how many sources
     * @param seed the random seed
     * @return the catalogue
     */
    public static Catalog generate(int count, long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        Catalog catalog = new Catalog(count);
        for (int i = 0; i < count; i++) {
            double raDeg = 360.0 * random.nextDouble();
            // Uniform on the sphere: sin(dec) uniform in [-1, 1].
            double decDeg = Math.toDegrees(Math.asin(2.0 * random.nextDouble() - 1.0));
            double u = random.nextDouble();
            SourceType sourceType = u < 0.55 ? SourceType.STAR : u < 0.65 ? SourceType.VARIABLE_STAR
                    : u < 0.95 ? SourceType.GALAXY : u < 0.98 ? SourceType.AGN : SourceType.QSO;
            double radius = sourceType == SourceType.GALAXY ? Math.exp(Math.log(15.0) * random.nextDouble()) : 0.0;
            catalog.add(raDeg, decDeg, designation(raDeg, decDeg), sourceType, radius);
        }
        return catalog;
    }

    /**
     * An IAU-style designation of a position: {@code ACX Jhhmmss.ss+ddmmss.s}.
     *
     * @param raDeg right ascension, degrees
     * @param decDeg declination, degrees
     * @return the designation
     */
    public static String designation(double raDeg, double decDeg) {
        // By hand rather than String.format, which would take most of the time of generating a catalogue.
        long centiseconds = Math.round(raDeg / 15.0 * 360_000.0) % (24L * 360_000);
        long deciArcsec = Math.round(Math.abs(decDeg) * 36_000.0);
        StringBuilder name = new StringBuilder(24).append("ACX J");
        pad(name, centiseconds / 360_000, 2);
        pad(name, centiseconds / 6_000 % 60, 2);
        pad(name, centiseconds / 100 % 60, 2);
        name.append('.');
        pad(name, centiseconds % 100, 2);
        name.append(decDeg < 0 ? '-' : '+');
        pad(name, deciArcsec / 36_000, 2);
        pad(name, deciArcsec / 600 % 60, 2);
        pad(name, deciArcsec / 10 % 60, 2);
        return name.append('.').append(deciArcsec % 10).toString();
    }

    private static void pad(StringBuilder out, long value, int digits) {
        String text = Long.toString(value);
        for (int i = text.length(); i < digits; i++) {
            out.append('0');
        }
        out.append(text);
    }
}
