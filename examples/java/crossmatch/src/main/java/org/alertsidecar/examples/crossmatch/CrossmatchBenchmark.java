package org.alertsidecar.examples.crossmatch;

import com.google.protobuf.ByteString;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.alertsidecar.worker.Alert;
import org.alertsidecar.worker.AvroAlerts;
import org.alertsidecar.worker.ContentTypes;
import org.alertsidecar.worker.Result;
import org.alertsidecar.worker.Verdict;
import org.apache.avro.Schema;

/**
 * How fast the cross-match is on one thread, with no sidecar and no network.
 *
 * <ol>
 *   <li>match: M positions against a catalogue of N sources (half of them within 1.5" of a catalogue
 *       source, so that matches are found and classified, half anywhere);</li>
 *   <li>with {@code --rubin FILE} (written by {@code make_bench_alerts.py}): whole alerts as the worker
 *       gets them, Avro in the Confluent wire format decoded with the batch's writer schema, matched, and
 *       annotated as JSON; and, for comparison, a full decode of every field.</li>
 * </ol>
 *
 * <pre>
 * java -cp examples/java/crossmatch/target/crossmatch.jar org.alertsidecar.examples.crossmatch.CrossmatchBenchmark \
 *     [--sources 1000000] [--alerts 1000000] [--rubin FILE]
 * </pre>
 */
public final class CrossmatchBenchmark {
    private CrossmatchBenchmark() {
    }

    /**
     * Run the benchmark and print its figures.
     *
     * @param args {@code [--sources N] [--alerts M] [--seed S] [--radius-arcsec R] [--rubin FILE]}
     * @throws IOException if the alerts file cannot be read
     */
    public static void main(String[] args) throws IOException {
        int sources = 1_000_000;
        int alerts = 1_000_000;
        long seed = 1;
        double radius = CrossmatchWorker.DEFAULT_RADIUS_ARCSEC;
        Path rubin = null;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--sources" -> sources = Integer.parseInt(args[i + 1]);
                case "--alerts" -> alerts = Integer.parseInt(args[i + 1]);
                case "--seed" -> seed = Long.parseLong(args[i + 1]);
                case "--radius-arcsec" -> radius = Double.parseDouble(args[i + 1]);
                case "--rubin" -> rubin = Path.of(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        long t0 = System.nanoTime();
        Catalog catalog = Catalog.generate(sources, seed);
        long t1 = System.nanoTime();
        SkyIndex index = new SkyIndex(catalog);
        long t2 = System.nanoTime();
        System.out.printf("catalogue: %,d sources generated in %.2f s, indexed in %.2f s%n", sources, (t1 - t0) / 1e9,
                (t2 - t1) / 1e9);

        double[] ra = new double[alerts];
        double[] dec = new double[alerts];
        SplittableRandom random = new SplittableRandom(seed + 1);
        for (int i = 0; i < alerts; i++) {
            if (i % 2 == 0) {
                int row = random.nextInt(catalog.size());
                double offset = 1.5 / 3600.0 * Math.sqrt(random.nextDouble());
                double angle = 2 * Math.PI * random.nextDouble();
                dec[i] = Math.max(-90, Math.min(90, catalog.dec(row) + offset * Math.sin(angle)));
                ra[i] = ((catalog.ra(row) + offset * Math.cos(angle) / Math.max(1e-9, Math.cos(Math.toRadians(dec[i]))))
                        % 360 + 360) % 360;
            } else {
                ra[i] = 360 * random.nextDouble();
                dec[i] = Math.toDegrees(Math.asin(2 * random.nextDouble() - 1));
            }
        }
        Matches matches = new Matches();
        int[] classes = new int[1];
        matchAll(index, ra, dec, radius, matches, classes); // warm-up: let the JIT compile the loop
        long t3 = System.nanoTime();
        long found = matchAll(index, ra, dec, radius, matches, classes);
        long t4 = System.nanoTime();
        double seconds = (t4 - t3) / 1e9;
        System.out.printf("match: %,d alerts in %.3f s on one thread = %,.0f alerts/s (%,d matches, radius %.1f\")%n",
                alerts, seconds, alerts / seconds, found, radius);

        if (rubin != null) {
            decodeFigures(rubin, new Crossmatch(index, radius, CrossmatchWorker.DEFAULT_MAX_MATCHES));
        }
    }

    private static long matchAll(SkyIndex index, double[] ra, double[] dec, double radius, Matches matches,
                                 int[] classes) {
        long found = 0;
        for (int i = 0; i < ra.length; i++) {
            index.query(ra[i], dec[i], radius, matches);
            found += matches.size();
            classes[0] += Classifier.classify(index.catalog(), matches).length();
        }
        return found;
    }

    private static void decodeFigures(Path path, Crossmatch crossmatch) throws IOException {
        List<org.alertsidecar.v1.Alert> messages = new ArrayList<>();
        int schemaId;
        String schema;
        long bytes = 0;
        try (DataInputStream in = new DataInputStream(Files.newInputStream(path))) {
            schemaId = in.readInt();
            byte[] text = new byte[in.readInt()];
            in.readFully(text);
            schema = new String(text, StandardCharsets.UTF_8);
            while (true) {
                int length;
                try {
                    length = in.readInt();
                } catch (EOFException end) {
                    break;
                }
                byte[] value = new byte[length];
                in.readFully(value);
                bytes += length;
                int n = messages.size();
                messages.add(org.alertsidecar.v1.Alert.newBuilder().setId("bench/0/" + n).setTopic("bench")
                        .setOffset(n).setValue(ByteString.copyFrom(value)).setContentType(ContentTypes.AVRO_CONFLUENT)
                        .setSchemaId(schemaId).build());
            }
        }
        Map<Integer, String> schemas = Map.of(schemaId, schema);
        List<Alert> alerts = new ArrayList<>();
        for (org.alertsidecar.v1.Alert message : messages) {
            alerts.add(Alert.of(message, schemas));
        }
        System.out.printf("alerts: %,d of schema id %d, %.1f KB each on average%n", alerts.size(), schemaId,
                bytes / 1000.0 / alerts.size());
        Schema writer = AvroAlerts.schema(schemaId, schema);
        // Each figure is taken after a warm-up pass, over enough passes to last a few seconds.
        System.out.printf("decode the read fields + match + JSON annotation: %,.0f alerts/s on one thread%n",
                rate(alerts, alert -> {
                    Result result = crossmatch.process(alert);
                    if (result.verdict() != Verdict.OK) {
                        throw new IllegalStateException(alert.id() + ": " + result.error());
                    }
                }));
        System.out.printf("full decode of every field (for comparison): %,.0f alerts/s on one thread%n",
                rate(alerts, alert -> AvroAlerts.decodeConfluent(alert.value(), writer)));
    }

    private static double rate(List<Alert> alerts, java.util.function.Consumer<Alert> work) {
        for (Alert alert : alerts) {
            work.accept(alert);
        }
        long done = 0;
        long start = System.nanoTime();
        while (System.nanoTime() - start < 3_000_000_000L) {
            for (Alert alert : alerts) {
                work.accept(alert);
            }
            done += alerts.size();
        }
        return done / ((System.nanoTime() - start) / 1e9);
    }
}
