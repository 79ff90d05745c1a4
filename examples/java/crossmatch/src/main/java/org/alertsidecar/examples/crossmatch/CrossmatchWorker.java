package org.alertsidecar.examples.crossmatch;

import java.io.IOException;
import java.nio.file.Path;
import java.util.logging.Logger;
import org.alertsidecar.worker.AlertWorkerServer;
import org.alertsidecar.worker.ContentTypes;

/**
 * The cross-match worker: annotates every alert with the catalogue sources around it and a class (see
 * {@link Classifier}), as one JSON output with the header {@value Crossmatch#CLASS_HEADER}.
 *
 * <pre>
 * alert-sidecar --in ... --out ... -- java -jar examples/java/crossmatch/target/crossmatch.jar --catalog cat.csv
 * </pre>
 *
 * <p>Options: {@code --catalog FILE} (CSV, see {@link Catalog}) or {@code --generate N [--seed S]} (a made-up
 * catalogue of N sources; {@code --write-catalog FILE} also writes it), {@code --radius-arcsec R} (default
 * 2), {@code --max-matches K} (default 5), {@code --port P} (default {@code $ALERT_WORKER_PORT}, else 50051),
 * {@code --batch-size N} (default: the sidecar's choice).
 */
public final class CrossmatchWorker {
    /**
     * The search radius: a few times the astrometric error of a faint Rubin source and of the catalogues
     * Sherlock matches against, and the radius Lasair's Sherlock uses for most point-source catalogues.
     */
    public static final double DEFAULT_RADIUS_ARCSEC = 2.0;
    /** Enough to show what surrounds a transient without making annotations long. */
    public static final int DEFAULT_MAX_MATCHES = 5;

    private static final Logger LOG = Logger.getLogger("org.alertsidecar.examples.crossmatch");

    private CrossmatchWorker() {
    }

    /**
     * Load the catalogue, index it and serve the worker until SIGTERM.
     *
     * @param args the options above
     */
    public static void main(String[] args) {
        // The SDK first: it sets one-line log records unless the program chose a format.
        AlertWorkerServer.Builder builder = AlertWorkerServer.builder();
        Options options;
        Catalog catalog;
        try {
            options = Options.parse(args);
            long started = System.nanoTime();
            catalog = options.catalog();
            LOG.info(String.format("catalogue of %,d sources loaded in %.2f s", catalog.size(),
                    (System.nanoTime() - started) / 1e9));
        } catch (IllegalArgumentException | IOException exc) {
            System.err.println("crossmatch: " + exc.getMessage());
            System.exit(2);
            return;
        }
        long started = System.nanoTime();
        SkyIndex index = new SkyIndex(catalog);
        LOG.info(String.format("indexed in %.2f s", (System.nanoTime() - started) / 1e9));
        Crossmatch crossmatch = new Crossmatch(index, options.radiusArcsec, options.maxMatches);
        builder.name("crossmatch").version("1.0.0")
                // Avro as it is first: the worker decodes only the fields it reads, which costs less than
                // the sidecar decoding whole alerts into JSON.
                .accepts(ContentTypes.AVRO_CONFLUENT, ContentTypes.AVRO_OCF, ContentTypes.JSON)
                .batchSize(options.batchSize)
                .processor(crossmatch::process);
        if (options.port != null) {
            builder.port(options.port);
        }
        builder.build().serve();
    }

    /** The command line. */
    static final class Options {
        Path catalogPath;
        Integer generate;
        long seed = 1;
        Path writeCatalog;
        double radiusArcsec = DEFAULT_RADIUS_ARCSEC;
        int maxMatches = DEFAULT_MAX_MATCHES;
        Integer port;
        int batchSize;

        static Options parse(String[] args) {
            Options options = new Options();
            for (int i = 0; i < args.length; i++) {
                String flag = args[i];
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException(flag + " needs a value");
                }
                String value = args[++i];
                try {
                    switch (flag) {
                        case "--catalog" -> options.catalogPath = Path.of(value);
                        case "--generate" -> options.generate = Integer.parseInt(value);
                        case "--seed" -> options.seed = Long.parseLong(value);
                        case "--write-catalog" -> options.writeCatalog = Path.of(value);
                        case "--radius-arcsec" -> options.radiusArcsec = Double.parseDouble(value);
                        case "--max-matches" -> options.maxMatches = Integer.parseInt(value);
                        case "--port" -> options.port = Integer.parseInt(value);
                        case "--batch-size" -> options.batchSize = Integer.parseInt(value);
                        default -> throw new IllegalArgumentException("unknown option " + flag + " (options: --catalog "
                                + "FILE | --generate N [--seed S] [--write-catalog FILE], --radius-arcsec R, "
                                + "--max-matches K, --port P, --batch-size N)");
                    }
                } catch (NumberFormatException exc) {
                    throw new IllegalArgumentException(flag + " takes a number, not '" + value + "'", exc);
                }
            }
            if ((options.catalogPath == null) == (options.generate == null)) {
                throw new IllegalArgumentException("give a catalogue: --catalog FILE (CSV: " + Catalog.HEADER + ") or "
                        + "--generate N");
            }
            if (!(options.radiusArcsec > 0)) {
                throw new IllegalArgumentException("--radius-arcsec must be positive");
            }
            return options;
        }

        Catalog catalog() throws IOException {
            if (catalogPath != null) {
                if (!catalogPath.toFile().isFile()) {
                    throw new IllegalArgumentException("no catalogue file " + catalogPath);
                }
                return Catalog.readCsv(catalogPath);
            }
            Catalog catalog = Catalog.generate(generate, seed);
            if (writeCatalog != null) {
                catalog.writeCsv(writeCatalog);
            }
            return catalog;
        }
    }
}
