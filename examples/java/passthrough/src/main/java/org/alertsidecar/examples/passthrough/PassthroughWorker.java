package org.alertsidecar.examples.passthrough;

import org.alertsidecar.worker.AlertWorkerServer;
import org.alertsidecar.worker.Result;

/**
 * Forwards every alert as it is, bytes untouched: what a Java stage costs when the worker does nothing,
 * for benchmarks. It accepts any content type, so the sidecar decodes nothing for it.
 *
 * <pre>alert-sidecar --in ... --out ... -- java -jar examples/java/passthrough/target/passthrough.jar</pre>
 */
public final class PassthroughWorker {
    private PassthroughWorker() {
    }

    /**
     * Serve on {@code $ALERT_WORKER_PORT} (else 50051), or on {@code --port N}.
     *
     * @param args {@code [--port N]}
     */
    public static void main(String[] args) {
        AlertWorkerServer.Builder builder = AlertWorkerServer.builder().name("passthrough").version("1.0.0")
                .processor(alert -> Result.forward());
        if (args.length == 2 && "--port".equals(args[0])) {
            builder.port(Integer.parseInt(args[1]));
        } else if (args.length != 0) {
            System.err.println("usage: PassthroughWorker [--port N]");
            System.exit(2);
        }
        builder.build().serve();
    }
}
