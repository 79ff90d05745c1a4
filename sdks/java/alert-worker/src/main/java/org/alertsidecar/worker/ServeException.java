package org.alertsidecar.worker;

/**
 * A worker cannot be served: its port is taken, or {@code ALERT_WORKER_PORT} is not a port number.
 * The message says what to change.
 */
public class ServeException extends AlertWorkerException {
    private static final long serialVersionUID = 1L;

    /**
     * A failure to serve.
     *
     * @param message what is wrong and what to do
     * @param cause the underlying exception, or null
     */
    public ServeException(String message, Throwable cause) {
        super(message, cause);
    }
}
