package org.alertsidecar.worker;

/**
 * Thrown by a processor to answer RETRY: the alert may succeed later (a catalogue that is down, a
 * timeout). The sidecar sends it again after a backoff, up to its retry limit, then dead-letters it
 * with this message. Thrown from a batch processor, it answers every alert of the batch.
 */
public class RetryException extends AlertWorkerException {
    private static final long serialVersionUID = 1L;

    /**
     * A retry with a reason.
     *
     * @param reason one line for a person: logged, and written into the dead-letter record's headers
     */
    public RetryException(String reason) {
        super(reason);
    }

    /**
     * A retry with a reason and its cause.
     *
     * @param reason one line for a person
     * @param cause the exception that made the alert fail for now
     */
    public RetryException(String reason, Throwable cause) {
        super(reason, cause);
    }
}
