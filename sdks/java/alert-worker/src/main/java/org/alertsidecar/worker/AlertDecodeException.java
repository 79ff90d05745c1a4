package org.alertsidecar.worker;

/**
 * An alert's value does not decode: corrupt bytes, an unknown schema id, a content type the method
 * cannot read. Escaping a processor, it answers DEAD_LETTER, since the same bytes never decode later.
 * Escaping a batch processor, it answers RETRY for the whole batch, since the other alerts are not
 * at fault: a batch processor should catch it and answer that alert alone with
 * {@link Result#deadLetter(String)}.
 */
public class AlertDecodeException extends AlertWorkerException {
    private static final long serialVersionUID = 1L;

    /**
     * A decode failure.
     *
     * @param message what could not be decoded and why
     */
    public AlertDecodeException(String message) {
        super(message);
    }

    /**
     * A decode failure and its cause.
     *
     * @param message what could not be decoded and why
     * @param cause the decoder's exception
     */
    public AlertDecodeException(String message, Throwable cause) {
        super(message, cause);
    }
}
