package org.alertsidecar.worker;

import java.util.List;
import java.util.Objects;

/**
 * What a processor answers about one alert: a {@link Verdict}, the outputs to produce when OK, and
 * an error otherwise.
 *
 * <table>
 *   <caption>What a processor may return or throw, and what the sidecar does</caption>
 *   <tr><th>returned or thrown</th><th>verdict</th></tr>
 *   <tr><td>{@link #forward()} (or {@link #keep()})</td><td>OK, the input alert forwarded as it is</td></tr>
 *   <tr><td>{@link #drop()}</td><td>OK, no output (a filter's "no")</td></tr>
 *   <tr><td>{@link #ok(Output...)}</td><td>OK, those outputs (none drops the alert)</td></tr>
 *   <tr><td>{@link #retry(String)} or a thrown {@link RetryException}</td><td>RETRY with that reason</td></tr>
 *   <tr><td>{@link #deadLetter(String)} or a thrown {@link DeadLetterException}</td>
 *       <td>DEAD_LETTER with that reason</td></tr>
 *   <tr><td>a thrown {@link AlertDecodeException}</td><td>DEAD_LETTER: the same bytes never decode</td></tr>
 *   <tr><td>any other exception</td><td>RETRY, error {@code "ExceptionClass: message"}, its stack trace
 *       logged</td></tr>
 *   <tr><td>{@code null}</td><td>RETRY, with an error saying what to return</td></tr>
 * </table>
 *
 * <p>Then the SDK checks each result as the sidecar would: outputs of a RETRY or DEAD_LETTER are
 * dropped, and an OK with an output for a route the worker did not declare becomes DEAD_LETTER.
 * Errors are made one line of at most 2,000 characters.
 */
public final class Result {
    private static final Result FORWARD = new Result(Verdict.OK, List.of(Output.forward()), "");
    private static final Result DROP = new Result(Verdict.OK, List.of(), "");

    private final Verdict verdict;
    private final List<Output> outputs;
    private final String error;

    private Result(Verdict verdict, List<Output> outputs, String error) {
        this.verdict = verdict;
        this.outputs = outputs;
        this.error = error;
    }

    /**
     * OK: produce the input alert as it is (a filter's "yes").
     *
     * @return the result
     */
    public static Result forward() {
        return FORWARD;
    }

    /**
     * The same as {@link #forward()}: keep the alert.
     *
     * @return the result
     */
    public static Result keep() {
        return FORWARD;
    }

    /**
     * OK with no output: the alert is done and nothing is produced (a filter's "no").
     *
     * @return the result
     */
    public static Result drop() {
        return DROP;
    }

    /**
     * OK with these outputs.
     *
     * @param outputs the records to produce, in order; none drops the alert
     * @return the result
     */
    public static Result ok(Output... outputs) {
        return ok(List.of(outputs));
    }

    /**
     * OK with these outputs.
     *
     * @param outputs the records to produce, in order; none drops the alert
     * @return the result
     */
    public static Result ok(List<Output> outputs) {
        for (Output output : Objects.requireNonNull(outputs, "outputs")) {
            Objects.requireNonNull(output, "Result.ok was given a null Output");
        }
        return new Result(Verdict.OK, List.copyOf(outputs), "");
    }

    /**
     * RETRY: the alert may succeed later; the sidecar sends it again after a backoff.
     *
     * @param reason one line for a person, logged and, if retries run out, written into the
     *     dead-letter record's headers
     * @return the result
     */
    public static Result retry(String reason) {
        return new Result(Verdict.RETRY, List.of(), reason == null || reason.isBlank()
                ? "Result.retry without a reason" : reason);
    }

    /**
     * DEAD_LETTER: the alert can never be processed; the sidecar writes it to the dead-letter buffer.
     *
     * @param reason one line for a person, written into the dead-letter record's headers
     * @return the result
     */
    public static Result deadLetter(String reason) {
        return new Result(Verdict.DEAD_LETTER, List.of(), reason == null || reason.isBlank()
                ? "Result.deadLetter without a reason" : reason);
    }

    /**
     * The verdict.
     *
     * @return OK, RETRY or DEAD_LETTER
     */
    public Verdict verdict() {
        return verdict;
    }

    /**
     * The records to produce (only with OK).
     *
     * @return an unmodifiable list
     */
    public List<Output> outputs() {
        return outputs;
    }

    /**
     * Why, for RETRY and DEAD_LETTER; empty for OK.
     *
     * @return the error
     */
    public String error() {
        return error;
    }

    Result withError(Verdict newVerdict, String newError) {
        return new Result(newVerdict, List.of(), newError);
    }

    /**
     * The contract's message for this result about the alert {@code alertId}.
     *
     * @param alertId the {@code Alert.id} this answers
     * @return the {@code AlertResult}
     */
    public org.alertsidecar.v1.AlertResult toProto(String alertId) {
        org.alertsidecar.v1.AlertResult.Builder out = org.alertsidecar.v1.AlertResult.newBuilder()
                .setId(alertId).setVerdict(verdict.toProto()).setError(error);
        for (Output output : outputs) {
            out.addOutputs(output.toProto());
        }
        return out.build();
    }

    @Override
    public String toString() {
        return "Result(" + verdict + (outputs.isEmpty() ? "" : ", " + outputs) + (error.isEmpty() ? "" : ", " + error)
                + ")";
    }
}
