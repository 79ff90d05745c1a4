package org.alertsidecar.worker;

import java.util.function.Consumer;
import java.util.logging.Logger;

/**
 * SIGTERM and SIGINT handled by the program rather than by the JVM, whose own handling runs the shutdown
 * hooks and then exits with status 143 (or 130): a worker stopped on purpose should exit 0, as the
 * sidecar and the other SDKs do.
 */
final class Signals {
    private static final Logger LOG = Logger.getLogger("org.alertsidecar.worker");

    private Signals() {
    }

    /**
     * Call {@code handler} with the signal's name ("TERM", "INT") when one arrives. Where the JVM has no
     * {@code sun.misc.Signal}, the shutdown hook of {@link AlertWorkerServer#start()} still stops the
     * server gracefully, with the JVM's exit status.
     */
    @SuppressWarnings("removal")
    static void onTerminate(Consumer<String> handler) {
        for (String name : new String[] {"TERM", "INT"}) {
            try {
                sun.misc.Signal.handle(new sun.misc.Signal(name), signal -> handler.accept(signal.getName()));
            } catch (IllegalArgumentException | LinkageError exc) {
                LOG.fine("cannot handle SIG" + name + " (" + exc + "): the shutdown hook stops the server");
            }
        }
    }
}
