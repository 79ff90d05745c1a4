package org.alertsidecar.worker;

/**
 * Thrown by a processor to answer DEAD_LETTER: the alert can never be processed (bad data, wrong
 * schema). The sidecar writes the original alert to the dead-letter buffer with this message as the
 * reason. Thrown from a batch processor, it answers every alert of the batch.
 */
public class DeadLetterException extends AlertWorkerException {
    private static final long serialVersionUID = 1L;

    /**
     * A dead letter with a reason.
     *
     * @param reason one line for a person, written into the dead-letter record's headers
     */
    public DeadLetterException(String reason) {
        super(reason);
    }

    /**
     * A dead letter with a reason and its cause.
     *
     * @param reason one line for a person
     * @param cause the exception that shows the alert cannot be processed
     */
    public DeadLetterException(String reason, Throwable cause) {
        super(reason, cause);
    }
}
