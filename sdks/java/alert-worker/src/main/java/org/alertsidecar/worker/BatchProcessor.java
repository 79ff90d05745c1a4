package org.alertsidecar.worker;

import java.util.List;

/**
 * A worker's logic for a batch of alerts at once, for work that is cheaper in bulk (a vectorised model,
 * one catalogue query for many positions).
 *
 * <p>Returns one {@link Result} per alert, in the alerts' order. An exception thrown here answers every
 * alert of the batch, so answer what concerns one alert alone (a {@link AlertDecodeException}, say)
 * with {@link Result#deadLetter(String)} at its place. May be called from several threads at once.
 */
@FunctionalInterface
public interface BatchProcessor {
    /**
     * Decide about a batch of alerts.
     *
     * @param alerts the alerts, of one or more partitions, each partition's in offset order
     * @return exactly one result per alert, in order
     * @throws Exception any exception answers every alert of the batch (RETRY unless it is a
     *     {@link DeadLetterException})
     */
    List<Result> process(List<Alert> alerts) throws Exception;
}
