package org.alertsidecar.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.alertsidecar.v1.AlertResult;
import org.alertsidecar.v1.BatchResult;
import org.junit.jupiter.api.Test;

/** What a processor returns or throws, and the verdict the sidecar gets: the table at {@link Result}. */
class ProcessingTest {
    private static AlertResult one(AlertProcessor processor, String json) {
        AlertWorkerServer server = AlertWorkerServer.builder().name("t").routes("side").processor(processor).build();
        BatchResult answer = server.process(Alerts.batch(9, Alerts.json(json, 3)));
        assertEquals(9, answer.getBatchId());
        assertEquals(1, answer.getResultsCount());
        assertEquals("test/0/3", answer.getResults(0).getId());
        return answer.getResults(0);
    }

    @Test
    void forwardDropAndOutputs() {
        AlertResult kept = one(alert -> Result.forward(), "{}");
        assertEquals(org.alertsidecar.v1.Verdict.VERDICT_OK, kept.getVerdict());
        assertTrue(kept.getOutputs(0).getForwardInput());
        assertEquals(0, one(alert -> Result.drop(), "{}").getOutputsCount());
        AlertResult made = one(alert -> Result.ok(Output.of(new byte[] {1, 2}).key("k").header("h", "v").route("side"),
                Output.json("{\"n\": 1}")), "{}");
        assertEquals(2, made.getOutputsCount());
        assertEquals("side", made.getOutputs(0).getRoute());
        assertEquals("k", made.getOutputs(0).getKey().toStringUtf8());
        assertEquals("application/octet-stream", made.getOutputs(0).getContentType());
        assertEquals("h", made.getOutputs(0).getHeaders(0).getKey());
        assertEquals("application/json", made.getOutputs(1).getContentType());
        assertTrue(!made.getOutputs(1).hasKey());
    }

    @Test
    void exceptionsBecomeVerdicts() {
        AlertResult retry = one(alert -> {
            throw new RetryException("catalogue down");
        }, "{}");
        assertEquals(org.alertsidecar.v1.Verdict.VERDICT_RETRY, retry.getVerdict());
        assertEquals("catalogue down", retry.getError());
        AlertResult dead = one(alert -> {
            throw new DeadLetterException("not ours");
        }, "{}");
        assertEquals(org.alertsidecar.v1.Verdict.VERDICT_DEAD_LETTER, dead.getVerdict());
        AlertResult crash = one(alert -> {
            throw new IllegalStateException("boom\nsecond line");
        }, "{}");
        assertEquals(org.alertsidecar.v1.Verdict.VERDICT_RETRY, crash.getVerdict());
        assertEquals("IllegalStateException: boom second line", crash.getError());
        AlertResult undecodable = one(alert -> Result.ok(Output.of(alert.json().toString().getBytes())), "{not json");
        assertEquals(org.alertsidecar.v1.Verdict.VERDICT_DEAD_LETTER, undecodable.getVerdict());
        assertTrue(undecodable.getError().startsWith("cannot decode the alert: "), undecodable.getError());
    }

    @Test
    void nullAnUndeclaredRouteAndLongErrors() {
        AlertResult none = one(alert -> null, "{}");
        assertEquals(org.alertsidecar.v1.Verdict.VERDICT_RETRY, none.getVerdict());
        assertTrue(none.getError().contains("returned null; return Result.forward()"), none.getError());
        AlertResult nowhere = one(alert -> Result.ok(Output.forward().route("nowhere")), "{}");
        assertEquals(org.alertsidecar.v1.Verdict.VERDICT_DEAD_LETTER, nowhere.getVerdict());
        assertEquals(0, nowhere.getOutputsCount());
        assertTrue(nowhere.getError().contains("--route nowhere=BUFFER"), nowhere.getError());
        AlertResult huge = one(alert -> Result.deadLetter("x".repeat(5000)), "{}");
        assertEquals(Processing.MAX_ERROR_CHARS, huge.getError().length());
        assertTrue(huge.getError().endsWith("..."));
    }

    @Test
    void batchProcessorAnswersEachAlertOrTheWholeBatch() {
        BatchProcessor alternate = alerts -> {
            List<Result> results = new java.util.ArrayList<>();
            for (Alert alert : alerts) {
                results.add(alert.offset() % 2 == 0 ? Result.forward() : Result.deadLetter("odd " + alert.offset()));
            }
            return results;
        };
        BatchResult answer = AlertWorkerServer.builder().batchProcessor(alternate).build()
                .process(Alerts.batch(1, Alerts.json("{}", 0), Alerts.json("{}", 1)));
        assertEquals(org.alertsidecar.v1.Verdict.VERDICT_OK, answer.getResults(0).getVerdict());
        assertEquals("odd 1", answer.getResults(1).getError());

        BatchResult short1 = AlertWorkerServer.builder().batchProcessor(alerts -> List.of(Result.forward())).build()
                .process(Alerts.batch(2, Alerts.json("{}", 0), Alerts.json("{}", 1)));
        for (AlertResult result : short1.getResultsList()) {
            assertEquals(org.alertsidecar.v1.Verdict.VERDICT_RETRY, result.getVerdict());
            assertTrue(result.getError().contains("returned 1 results for 2 alerts"), result.getError());
        }
        BatchResult decode = AlertWorkerServer.builder().batchProcessor(alerts -> {
            alerts.forEach(Alert::json);
            return List.of(Result.forward(), Result.forward());
        }).build().process(Alerts.batch(3, Alerts.json("{}", 0), Alerts.json("[", 1)));
        for (AlertResult result : decode.getResultsList()) {
            assertEquals(org.alertsidecar.v1.Verdict.VERDICT_RETRY, result.getVerdict(), "the good alert is not lost");
        }
    }

    @Test
    void describeAndDefinitionErrors() {
        var description = AlertWorkerServer.builder().name("x").version("2").accepts(ContentTypes.JSON).routes("a", "b")
                .batchSize(100).fields("diaSource.ra").processor(alert -> Result.forward()).build().describe();
        assertEquals(org.alertsidecar.v1.ProtocolVersion.PROTOCOL_VERSION_1, description.getProtocolVersion());
        assertEquals(List.of("a", "b"), description.getRoutesList());
        assertEquals(100, description.getPreferredBatchSize());
        assertEquals(List.of("diaSource.ra"), description.getFieldsList());
        assertTrue(description.getSdk().startsWith("java/alert-worker 0."), description.getSdk());
        assertEquals(List.of("*/*"), AlertWorkerServer.builder().processor(a -> null).build().describe().getAcceptsList());
        assertThrows(IllegalArgumentException.class, () -> AlertWorkerServer.builder().build());
        assertThrows(IllegalArgumentException.class,
                () -> AlertWorkerServer.builder().routes("a", "a").processor(a -> null).build());
        assertThrows(IllegalArgumentException.class,
                () -> AlertWorkerServer.builder().fields("diaSource..ra").processor(a -> null).build());
        assertThrows(IllegalStateException.class, () -> Output.forward().key("k"));
    }
}
