package org.alertsidecar.worker;

import io.grpc.Server;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Logger;
import java.util.regex.Pattern;
import org.alertsidecar.v1.AlertBatch;
import org.alertsidecar.v1.AlertWorkerGrpc;
import org.alertsidecar.v1.BatchResult;
import org.alertsidecar.v1.ProtocolVersion;
import org.alertsidecar.v1.WorkerDescription;

/**
 * Serves a worker to the sidecar over gRPC: the {@code alertsidecar.v1.AlertWorker} service (Describe,
 * ProcessAlert, ProcessBatch, ProcessStream) and the standard health service, which reports SERVING once
 * started and NOT_SERVING from the moment the server begins to stop.
 *
 * <pre>{@code
 * AlertWorkerServer.builder()
 *     .name("crossmatch").version("1.0.0")
 *     .accepts(ContentTypes.AVRO_CONFLUENT)
 *     .processor(alert -> Result.forward())
 *     .build()
 *     .serve();     // start(), then blockUntilShutdown(); SIGTERM or SIGINT stop it gracefully
 * }</pre>
 *
 * <p>The port is {@link Builder#port(int)}, else {@code $ALERT_WORKER_PORT} (set by a sidecar that starts
 * the worker itself: {@code alert-sidecar ... -- java -cp ... Main}), else 50051.
 */
public final class AlertWorkerServer implements AutoCloseable {
    /** The environment variable a sidecar that starts the worker sets to the port it dials. */
    public static final String PORT_ENV = "ALERT_WORKER_PORT";
    /** gRPC's customary port, for a worker started by hand next to a sidecar started with its defaults. */
    public static final int DEFAULT_PORT = 50051;
    /**
     * The largest message the worker takes or sends. gRPC's default is 4 MiB; a batch of 100 Rubin alerts
     * of about 100 KB each (mostly cutouts; Rubin DMTN-102) is about 10 MB, and the sidecar sends batches of
     * several hundred. The same limit as the sidecar's and the Python SDK's.
     */
    public static final int MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
    /**
     * How long stopping lets calls in progress finish: a batch takes well under a second, and Kubernetes
     * gives a pod 30 s between SIGTERM and SIGKILL. The Python SDK's default too.
     */
    public static final Duration DEFAULT_GRACE = Duration.ofSeconds(10);
    /** The full name of the service, as the health service reports it. */
    public static final String SERVICE_NAME = AlertWorkerGrpc.SERVICE_NAME;
    /** This SDK's version. */
    public static final String SDK_VERSION = readVersion();
    /** What {@code WorkerDescription.sdk} says: the language, the SDK and its version. */
    public static final String SDK = "java/alert-worker " + SDK_VERSION;

    static {
        // A worker is a program's main loop: if the program has not chosen a log format, make the SDK's
        // lines one line each rather than java.util.logging's two.
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tF %1$tT %4$s %3$s: %5$s%6$s%n");
        }
    }

    private static final Logger LOG = Logger.getLogger("org.alertsidecar.worker");

    private final Builder config;
    private final WorkerDescription description;
    private final Processing processing;
    private final Object stateLock = new Object();
    private final CountDownLatch terminated = new CountDownLatch(1);
    private Server server;
    private HealthStatusManager health;
    private AlertWorkerService service;
    private ExecutorService streamPool;
    private Thread shutdownHook;
    private boolean stopped;
    private int boundPort = -1;

    private AlertWorkerServer(Builder config) {
        this.config = config;
        this.processing = new Processing(config.name, config.routes, config.processor, config.batchProcessor);
        this.description = WorkerDescription.newBuilder()
                .setName(config.name)
                .setVersion(config.version)
                .setProtocolVersion(ProtocolVersion.PROTOCOL_VERSION_1)
                .addAllAccepts(config.accepts)
                .setPreferredBatchSize(config.batchSize)
                .addAllRoutes(config.routes)
                .setSdk(SDK)
                .addAllFields(config.fields)
                .build();
    }

    /**
     * A builder of a worker's server.
     *
     * @return a new builder
     */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * The worker's answer to Describe.
     *
     * @return the description
     */
    public WorkerDescription describe() {
        return description;
    }

    /**
     * Run the worker on a batch and answer it, exactly as the server does, without a server: for tests.
     *
     * @param batch the batch, as the sidecar would send it
     * @return one result per alert, in the batch's order
     */
    public BatchResult process(AlertBatch batch) {
        return processing.processBatch(batch);
    }

    /**
     * Start serving in background threads and return at once; health reports SERVING from here on.
     * Registers a JVM shutdown hook that stops the server gracefully.
     *
     * @return this server
     * @throws ServeException if the port cannot be used or {@code $ALERT_WORKER_PORT} is not a port
     * @throws IllegalStateException if the server was started before
     */
    public AlertWorkerServer start() {
        synchronized (stateLock) {
            if (server != null) {
                throw new IllegalStateException("the server was started already");
            }
            int port = resolvePort(config.port);
            streamPool = Executors.newFixedThreadPool(config.threads, daemonThreads("alert-worker-stream"));
            service = new AlertWorkerService(description, processing, streamPool, 2 * config.threads);
            health = new HealthStatusManager();
            Server built = NettyServerBuilder.forAddress(new InetSocketAddress(config.host, port))
                    .maxInboundMessageSize(MAX_MESSAGE_BYTES)
                    .addService(service)
                    .addService(health.getHealthService())
                    .build();
            try {
                built.start();
            } catch (IOException exc) {
                streamPool.shutdownNow();
                throw new ServeException("cannot listen on " + config.host + ":" + port + ": is another worker there? "
                        + "choose another port (" + exc.getMessage() + ")", exc);
            }
            server = built;
            boundPort = built.getPort();
            health.setStatus("", ServingStatus.SERVING);
            health.setStatus(SERVICE_NAME, ServingStatus.SERVING);
            shutdownHook = new Thread(() -> stop(config.grace), "alert-worker-shutdown");
            Runtime.getRuntime().addShutdownHook(shutdownHook);
        }
        LOG.info("serving worker " + description.getName() + " " + description.getVersion() + " on " + address()
                + " (" + SDK + ")");
        return this;
    }

    /**
     * Start, then block until the server stops; SIGTERM or SIGINT stop it gracefully and this returns, so a
     * {@code main} that ends here exits with status 0. A port that cannot be used ends the program with a
     * one-line message and status 1, as the other SDKs do.
     */
    public void serve() {
        try {
            start();
        } catch (ServeException exc) {
            System.err.println("alert_worker: " + exc.getMessage());
            System.exit(1);
        }
        try {
            blockUntilShutdown();
        } catch (InterruptedException exc) {
            Thread.currentThread().interrupt();
            stop(Duration.ZERO);
        }
    }

    /**
     * Block until the server has stopped. SIGTERM and SIGINT, from here on, stop it gracefully (health
     * NOT_SERVING, open streams end, calls in progress finish, at most the grace period) and then this
     * returns, so that the program exits with status 0 rather than the JVM's 143.
     *
     * @throws InterruptedException if the waiting thread is interrupted
     */
    public void blockUntilShutdown() throws InterruptedException {
        Signals.onTerminate(signal -> {
            LOG.info("received SIG" + signal + ": stopping");
            Thread stopper = new Thread(() -> stop(config.grace), "alert-worker-stop");
            stopper.start();
        });
        terminated.await();
    }

    /**
     * The port the server listens on (the one chosen when {@link Builder#port(int)} is 0).
     *
     * @return the port
     * @throws IllegalStateException before {@link #start()}
     */
    public int port() {
        synchronized (stateLock) {
            if (boundPort < 0) {
                throw new IllegalStateException("the server is not started");
            }
            return boundPort;
        }
    }

    /**
     * {@code host:port}, as a gRPC client dials it.
     *
     * @return the address
     */
    public String address() {
        String host = config.host.contains(":") && !config.host.startsWith("[") ? "[" + config.host + "]" : config.host;
        return host + ":" + port();
    }

    /** Stop gracefully, with the builder's grace period ({@link #DEFAULT_GRACE} unless set). */
    public void stop() {
        stop(config.grace);
    }

    /**
     * Stop serving, gracefully: health NOT_SERVING, new calls refused, open streams end once the batches
     * they are processing are answered, calls in progress finish. Calls still running after {@code grace}
     * are cancelled. Returns once the server is gone; calling it again does nothing.
     *
     * @param grace how long calls in progress may take to finish
     */
    public void stop(Duration grace) {
        Server running;
        synchronized (stateLock) {
            if (stopped || server == null) {
                stopped = true;
                terminated.countDown();
                return;
            }
            stopped = true;
            running = server;
        }
        // Health first, so that a sidecar watching it stops sending before the calls it has open end.
        health.enterTerminalState();
        service.beginShutdown();
        running.shutdown();
        try {
            // gRPC waits for every call it accepted, also one whose handler has not started yet; the alert
            // streams end themselves (beginShutdown). A health Watch never ends by itself and would hold
            // the server for the whole grace period: the sidecar checks health with Check only.
            if (!running.awaitTermination(grace.toMillis(), TimeUnit.MILLISECONDS)) {
                LOG.warning("calls still running after " + grace.toMillis() + " ms: cancelling them");
            }
            running.shutdownNow();
            running.awaitTermination(1, TimeUnit.SECONDS);
        } catch (InterruptedException exc) {
            running.shutdownNow();
            Thread.currentThread().interrupt();
        } finally {
            streamPool.shutdownNow();
            if (Thread.currentThread() != shutdownHook) {
                try {
                    Runtime.getRuntime().removeShutdownHook(shutdownHook);
                } catch (IllegalStateException alreadyShuttingDown) {
                    // the JVM is exiting: the hook is running or done
                }
            }
            LOG.info("stopped worker " + description.getName());
            terminated.countDown();
        }
    }

    /** The same as {@link #stop()}. */
    @Override
    public void close() {
        stop();
    }

    static int resolvePort(Integer port) {
        if (port != null) {
            return port;
        }
        String text = System.getenv(PORT_ENV);
        if (text == null || text.isBlank()) {
            return DEFAULT_PORT;
        }
        try {
            int fromEnv = Integer.parseInt(text.strip());
            if (fromEnv < 0 || fromEnv > 65535) {
                throw new NumberFormatException();
            }
            return fromEnv;
        } catch (NumberFormatException exc) {
            throw new ServeException(PORT_ENV + "='" + text + "' is not a port number (0 to 65535)", null);
        }
    }

    private static ThreadFactory daemonThreads(String prefix) {
        AtomicInteger count = new AtomicInteger();
        return runnable -> {
            Thread thread = new Thread(runnable, prefix + "-" + count.incrementAndGet());
            thread.setDaemon(true); // a pool must not keep the JVM alive once the server has stopped
            return thread;
        };
    }

    private static String readVersion() {
        try (InputStream in = AlertWorkerServer.class.getResourceAsStream("sdk.properties")) {
            Properties properties = new Properties();
            if (in != null) {
                properties.load(in);
            }
            return properties.getProperty("version", "unknown");
        } catch (IOException exc) {
            return "unknown";
        }
    }

    /** What a worker is and how it is served; {@link #build()} checks it and makes the server. */
    public static final class Builder {
        /** A projection path: Avro names joined by dots, as {@code WorkerDescription.fields} writes them. */
        private static final Pattern FIELD_PATH = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*");

        private Integer port;
        private String host = "127.0.0.1";
        private String name = "worker";
        private String version = "0.0.0";
        private List<String> accepts = List.of(ContentTypes.ANY);
        private List<String> routes = List.of();
        private List<String> fields = List.of();
        private int batchSize;
        private AlertProcessor processor;
        private BatchProcessor batchProcessor;
        private int threads = Runtime.getRuntime().availableProcessors();
        private Duration grace = DEFAULT_GRACE;

        private Builder() {
        }

        /**
         * The port to listen on; 0 picks a free one ({@link AlertWorkerServer#port()} tells which).
         * Default: {@code $ALERT_WORKER_PORT}, else 50051.
         *
         * @param port 0 to 65535
         * @return this builder
         */
        public Builder port(int port) {
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("port " + port + " is not a port number (0 to 65535; 0 picks a free port)");
            }
            this.port = port;
            return this;
        }

        /**
         * The address to listen on. Default {@code 127.0.0.1}, where a sidecar that starts the worker dials
         * it; {@code 0.0.0.0} for a sidecar on another host.
         *
         * @param host an IP address or host name of this machine
         * @return this builder
         */
        public Builder host(String host) {
            this.host = Objects.requireNonNull(host, "host");
            return this;
        }

        /**
         * A short name for logs and metrics, e.g. {@code "crossmatch"}. Default {@code "worker"}.
         *
         * @param name the name
         * @return this builder
         */
        public Builder name(String name) {
            this.name = Objects.requireNonNull(name, "name");
            return this;
        }

        /**
         * The worker's own version, free text. Default {@code "0.0.0"}.
         *
         * @param version the version
         * @return this builder
         */
        public Builder version(String version) {
            this.version = Objects.requireNonNull(version, "version");
            return this;
        }

        /**
         * The content types the worker takes, in order of preference ({@link ContentTypes}). Default
         * {@code "*}{@code /*"}: every alert as it is in the input buffer. {@link ContentTypes#AVRO_CONFLUENT}
         * gets Rubin alerts as they are, with their writer schemas; {@link ContentTypes#JSON} has the sidecar
         * decode Avro alerts into JSON.
         *
         * @param contentTypes media types
         * @return this builder
         */
        public Builder accepts(String... contentTypes) {
            this.accepts = List.of(contentTypes);
            return this;
        }

        /**
         * The output routes the worker may name in {@link Output#route(String)}, besides the default
         * {@code ""}. The sidecar binds each with {@code --route NAME=BUFFER}.
         *
         * @param routes route names
         * @return this builder
         */
        public Builder routes(String... routes) {
            this.routes = List.of(routes);
            return this;
        }

        /**
         * The fields of the decoded alert the worker reads, as dotted paths ({@code "diaSource.psfFlux"}):
         * alerts the sidecar decodes to JSON then carry only those. Default: the whole alert.
         *
         * @param paths dotted field paths
         * @return this builder
         */
        public Builder fields(String... paths) {
            this.fields = List.of(paths);
            return this;
        }

        /**
         * How many alerts the worker prefers in one call; 0 (the default) leaves it to the sidecar.
         *
         * @param batchSize 0 or more
         * @return this builder
         */
        public Builder batchSize(int batchSize) {
            if (batchSize < 0) {
                throw new IllegalArgumentException("batchSize must be 0 (the sidecar chooses) or more, not " + batchSize);
            }
            this.batchSize = batchSize;
            return this;
        }

        /**
         * The worker's logic, one alert at a time. Give this or {@link #batchProcessor}.
         *
         * @param processor usually a lambda {@code alert -> Result...}
         * @return this builder
         */
        public Builder processor(AlertProcessor processor) {
            this.processor = Objects.requireNonNull(processor, "processor");
            return this;
        }

        /**
         * The worker's logic, a batch at a time. Give this or {@link #processor}.
         *
         * @param batchProcessor returns one result per alert, in order
         * @return this builder
         */
        public Builder batchProcessor(BatchProcessor batchProcessor) {
            this.batchProcessor = Objects.requireNonNull(batchProcessor, "batchProcessor");
            return this;
        }

        /**
         * Threads that process the batches of ProcessStream calls at once. Default: the number of cores.
         *
         * @param threads 1 or more
         * @return this builder
         */
        public Builder threads(int threads) {
            if (threads < 1) {
                throw new IllegalArgumentException("threads must be 1 or more, not " + threads);
            }
            this.threads = threads;
            return this;
        }

        /**
         * How long stopping lets calls in progress finish. Default {@link #DEFAULT_GRACE}.
         *
         * @param grace the grace period
         * @return this builder
         */
        public Builder grace(Duration grace) {
            this.grace = Objects.requireNonNull(grace, "grace");
            return this;
        }

        /**
         * Check the definition and make the server (not yet started).
         *
         * @return the server
         * @throws IllegalArgumentException naming what is wrong with the definition
         */
        public AlertWorkerServer build() {
            String who = "worker '" + name + "'";
            if ((processor == null) == (batchProcessor == null)) {
                throw new IllegalArgumentException(who + ": give exactly one of processor(...) and batchProcessor(...)");
            }
            if (name.isBlank()) {
                throw new IllegalArgumentException("a worker's name must not be empty");
            }
            for (String type : accepts) {
                if (type == null || type.isBlank()) {
                    throw new IllegalArgumentException(who + ": accepts lists an empty content type");
                }
            }
            checkNames(who, "routes", routes);
            for (String path : fields) {
                if (path == null || !FIELD_PATH.matcher(path).matches()) {
                    throw new IllegalArgumentException(who + ": fields lists '" + path + "', which is not a dotted path "
                            + "of field names like \"diaSource.psfFlux\"");
                }
            }
            checkNames(who, "fields", fields);
            accepts = new ArrayList<>(accepts);
            return new AlertWorkerServer(this);
        }

        private static void checkNames(String who, String what, List<String> names) {
            for (String item : names) {
                if (item == null || item.isEmpty()) {
                    throw new IllegalArgumentException(who + ": " + what + " lists an empty name"
                            + ("routes".equals(what) ? " (the default route \"\" is always there)" : ""));
                }
            }
            if (new LinkedHashSet<>(names).size() != names.size()) {
                throw new IllegalArgumentException(who + ": " + what + " " + names + " repeats a name");
            }
        }
    }
}
