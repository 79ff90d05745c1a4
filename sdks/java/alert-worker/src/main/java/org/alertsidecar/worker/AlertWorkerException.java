package org.alertsidecar.worker;

/** The root of the SDK's exceptions. */
public class AlertWorkerException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception with a message for a person.
     *
     * @param message what went wrong and, where it helps, what to do
     */
    public AlertWorkerException(String message) {
        super(message);
    }

    /**
     * An exception with a message and the exception that caused it.
     *
     * @param message what went wrong
     * @param cause the underlying exception
     */
    public AlertWorkerException(String message, Throwable cause) {
        super(message, cause);
    }
}
