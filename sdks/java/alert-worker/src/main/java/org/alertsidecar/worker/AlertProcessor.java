package org.alertsidecar.worker;

/**
 * A worker's logic for one alert, usually a lambda: {@code alert -> Result.forward()}.
 *
 * <p>May be called from several threads at once (the sidecar keeps several batches in flight):
 * guard any state it shares. What it may return or throw is listed at {@link Result}.
 */
@FunctionalInterface
public interface AlertProcessor {
    /**
     * Decide about one alert.
     *
     * @param alert the alert
     * @return what to do with it; never null
     * @throws Exception any exception answers RETRY (see {@link Result} for the ones that do not)
     */
    Result process(Alert alert) throws Exception;
}
