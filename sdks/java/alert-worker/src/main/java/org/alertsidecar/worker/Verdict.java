package org.alertsidecar.worker;

/** The worker's decision about one alert: the contract's {@code Verdict}. */
public enum Verdict {
    /** The alert is done: its outputs (none, one or several) are produced. OK with none drops it. */
    OK(org.alertsidecar.v1.Verdict.VERDICT_OK),
    /** It may succeed later: sent again after a backoff, then dead-lettered. Outputs are ignored. */
    RETRY(org.alertsidecar.v1.Verdict.VERDICT_RETRY),
    /** It can never be processed: written to the dead-letter buffer with the error. */
    DEAD_LETTER(org.alertsidecar.v1.Verdict.VERDICT_DEAD_LETTER);

    private final org.alertsidecar.v1.Verdict proto;

    Verdict(org.alertsidecar.v1.Verdict proto) {
        this.proto = proto;
    }

    /**
     * The contract's value.
     *
     * @return the generated enum constant
     */
    public org.alertsidecar.v1.Verdict toProto() {
        return proto;
    }
}
