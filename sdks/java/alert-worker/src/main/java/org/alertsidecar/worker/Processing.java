package org.alertsidecar.worker;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.alertsidecar.v1.AlertBatch;
import org.alertsidecar.v1.AlertResult;
import org.alertsidecar.v1.BatchResult;

/**
 * The SDK's core: contract messages in, the worker's code run, contract messages out. The gRPC service
 * and {@link AlertWorkerServer#process} both go through here and only here, with the semantics of the
 * Python SDK's {@code alert_worker.processing} (the table is at {@link Result}).
 */
final class Processing {
    private static final Logger LOG = Logger.getLogger("org.alertsidecar.worker");

    /**
     * An error is one line for a person, logged and written into the dead-letter record's headers; a
     * runaway message (a whole payload in an exception) must not make every dead-letter record huge.
     * The same limit as the Python SDK's.
     */
    static final int MAX_ERROR_CHARS = 2000;

    private final String name;
    private final Set<String> routes;
    private final AlertProcessor processor;
    private final BatchProcessor batchProcessor;
    /** Exception classes whose stack trace was logged: later ones of a class get one line. */
    private final Set<String> tracesLogged = ConcurrentHashMap.newKeySet();

    Processing(String name, List<String> routes, AlertProcessor processor, BatchProcessor batchProcessor) {
        this.name = name;
        this.routes = Set.copyOf(routes);
        this.processor = processor;
        this.batchProcessor = batchProcessor;
    }

    BatchResult processBatch(AlertBatch batch) {
        return BatchResult.newBuilder().setBatchId(batch.getBatchId())
                .addAllResults(process(batch.getAlertsList(), batch.getSchemasMap())).build();
    }

    List<AlertResult> process(List<org.alertsidecar.v1.Alert> messages, Map<Integer, String> schemas) {
        Map<Integer, String> shared = Map.copyOf(schemas);
        Map<Integer, org.apache.avro.Schema> parsed = new ConcurrentHashMap<>();
        List<Alert> alerts = new ArrayList<>(messages.size());
        for (org.alertsidecar.v1.Alert message : messages) {
            alerts.add(Alert.ofBatch(message, shared, parsed));
        }
        List<Result> results = batchProcessor != null ? runBatch(alerts) : runEach(alerts);
        List<AlertResult> answers = new ArrayList<>(alerts.size());
        for (int i = 0; i < alerts.size(); i++) {
            Alert alert = alerts.get(i);
            answers.add(checked(alert, results.get(i)).toProto(alert.id()));
        }
        return answers;
    }

    private List<Result> runEach(List<Alert> alerts) {
        List<Result> results = new ArrayList<>(alerts.size());
        for (Alert alert : alerts) {
            Result result;
            try {
                result = processor.process(alert);
            } catch (Exception | AssertionError | StackOverflowError exc) {
                results.add(thrown(exc, "alert " + alert.id()));
                continue;
            }
            if (result == null) {
                String error = "worker '" + name + "' returned null; return Result.forward() to keep the alert, "
                        + "Result.drop() to drop it, or Result.ok(outputs...). Did a branch of the processor forget "
                        + "to return a Result?";
                LOG.severe(error + " (alert " + alert.id() + ")");
                result = Result.retry(error);
            }
            results.add(result);
        }
        return results;
    }

    private List<Result> runBatch(List<Alert> alerts) {
        int count = alerts.size();
        String where = count == 0 ? "an empty batch" : "a batch of " + count + " alerts from " + alerts.get(0).id();
        List<Result> returned;
        try {
            returned = batchProcessor.process(Collections.unmodifiableList(alerts));
        } catch (AlertDecodeException exc) {
            // One bad alert must not dead-letter the good ones of its batch: retry them all, and tell the
            // author how to answer the bad one alone.
            String error = "cannot decode an alert of the batch: " + exc.getMessage() + " (a batch processor should "
                    + "answer that alert alone with Result.deadLetter(...) and keep the others)";
            LOG.warning("worker '" + name + "', " + where + ": " + error);
            return Collections.nCopies(count, Result.retry(oneLine(error)));
        } catch (Exception | AssertionError | StackOverflowError exc) {
            return Collections.nCopies(count, thrown(exc, where));
        }
        String problem = null;
        if (returned == null) {
            problem = "returned null; return a list with one Result per alert, in order";
        } else if (returned.size() != count) {
            problem = "returned " + returned.size() + " results for " + count + " alerts; return exactly one Result "
                    + "per alert, in order";
        }
        if (problem != null) {
            String error = "the batch processor of worker '" + name + "' " + problem;
            LOG.severe(error + " (" + where + ")");
            return Collections.nCopies(count, Result.retry(oneLine(error)));
        }
        List<Result> results = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            Result result = returned.get(i);
            if (result == null) {
                String error = "the batch processor of worker '" + name + "' returned null for alert " + i + " of the "
                        + "batch; return Result.forward(), Result.drop(), Result.ok(outputs...) or Result.retry(...)";
                LOG.severe(error + " (alert " + alerts.get(i).id() + ")");
                result = Result.retry(error);
            }
            results.add(result);
        }
        return results;
    }

    private Result thrown(Throwable exc, String where) {
        if (exc instanceof RetryException) {
            return Result.retry(oneLine(messageOr(exc, "RetryException thrown without a reason")));
        }
        if (exc instanceof DeadLetterException) {
            return Result.deadLetter(oneLine(messageOr(exc, "DeadLetterException thrown without a reason")));
        }
        if (exc instanceof AlertDecodeException) {
            LOG.warning("worker '" + name + "' could not decode " + where + ": " + exc.getMessage());
            return Result.deadLetter(oneLine("cannot decode the alert: " + exc.getMessage()));
        }
        String error = oneLine(exc.getClass().getSimpleName() + ": " + exc.getMessage());
        String message = "worker '" + name + "' threw on " + where + ": " + error;
        if (tracesLogged.add(exc.getClass().getName())) {
            LOG.log(Level.SEVERE, message, exc);
        } else {
            LOG.severe(message + " (its stack trace is logged above)");
        }
        return Result.retry(error);
    }

    private static String messageOr(Throwable exc, String fallback) {
        String message = exc.getMessage();
        return message == null || message.isBlank() ? fallback : message;
    }

    /** The result as the sidecar will act on it: outputs only with OK, routes only declared ones. */
    private Result checked(Alert alert, Result result) {
        if (result.verdict() != Verdict.OK) {
            String error = oneLine(result.error());
            return error.equals(result.error()) ? result : result.withError(result.verdict(), error);
        }
        for (Output output : result.outputs()) {
            if (!output.route().isEmpty() && !routes.contains(output.route())) {
                String error = "worker '" + name + "' produced an output for route '" + output.route() + "', which it "
                        + "does not declare (routes: " + routes + "); add it to the worker's routes and bind it with "
                        + "--route " + output.route() + "=BUFFER";
                LOG.severe(error + " (alert " + alert.id() + ")");
                return result.withError(Verdict.DEAD_LETTER, oneLine(error));
            }
        }
        return result;
    }

    /** Whitespace runs (newlines too) made one space, and at most {@link #MAX_ERROR_CHARS} characters. */
    static String oneLine(String text) {
        String line = text.strip().replaceAll("\\s+", " ");
        if (line.length() > MAX_ERROR_CHARS) {
            line = line.substring(0, MAX_ERROR_CHARS - 3) + "...";
        }
        return line;
    }
}
