package org.alertsidecar.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.alertsidecar.v1.AlertBatch;
import org.alertsidecar.v1.AlertWorkerGrpc;
import org.alertsidecar.v1.BatchResult;
import org.alertsidecar.v1.DescribeRequest;
import org.alertsidecar.v1.Verdict;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The server on a real loopback port, called as the sidecar calls it. */
class AlertWorkerServerTest {
    private AlertWorkerServer server;
    private ManagedChannel channel;
    /** Counted down when the processor starts on an alert. */
    private final CountDownLatch processing = new CountDownLatch(1);

    /** Keeps alerts with an even n, retries the odd ones; sleeps "sleep" ms first if asked. */
    private AlertWorkerServer start(String name) {
        server = AlertWorkerServer.builder().port(0).name(name).version("3.1").accepts(ContentTypes.JSON).threads(4)
                .grace(Duration.ofSeconds(5))
                .processor(alert -> {
                    var json = alert.json();
                    processing.countDown();
                    Thread.sleep(json.path("sleep").asLong(0));
                    return json.path("n").asLong() % 2 == 0 ? Result.forward() : Result.retry("odd");
                })
                .build().start();
        channel = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
        return server;
    }

    @AfterEach
    void tearDown() throws InterruptedException {
        if (channel != null) {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
        if (server != null) {
            server.stop(Duration.ZERO);
        }
    }

    private static org.alertsidecar.v1.Alert alert(long n, long sleepMs) {
        return Alerts.json("{\"n\": " + n + ", \"sleep\": " + sleepMs + "}", n);
    }

    @Test
    void describeHealthAndOneBatch() {
        start("odd-even");
        var description = AlertWorkerGrpc.newBlockingStub(channel).describe(DescribeRequest.getDefaultInstance());
        assertEquals("odd-even", description.getName());
        assertEquals(List.of(ContentTypes.JSON), description.getAcceptsList());
        var health = HealthGrpc.newBlockingStub(channel);
        for (String service : List.of("", "alertsidecar.v1.AlertWorker")) {
            assertEquals(ServingStatus.SERVING,
                    health.check(HealthCheckRequest.newBuilder().setService(service).build()).getStatus());
        }
        BatchResult answer = AlertWorkerGrpc.newBlockingStub(channel)
                .processBatch(Alerts.batch(77, alert(0, 0), alert(1, 0), alert(2, 0)));
        assertEquals(77, answer.getBatchId());
        assertEquals(List.of(Verdict.VERDICT_OK, Verdict.VERDICT_RETRY, Verdict.VERDICT_OK),
                answer.getResultsList().stream().map(r -> r.getVerdict()).toList());
        assertEquals(Verdict.VERDICT_RETRY, AlertWorkerGrpc.newBlockingStub(channel).processAlert(alert(5, 0)).getVerdict());
    }

    @Test
    void largeBatchesPassTheDefaultMessageLimit() {
        start("large");
        String padding = "x".repeat(100_000);
        List<org.alertsidecar.v1.Alert> alerts = new ArrayList<>();
        for (int n = 0; n < 100; n++) {
            alerts.add(Alerts.json("{\"n\": " + 2 * n + ", \"pad\": \"" + padding + "\"}", n));
        }
        BatchResult answer = AlertWorkerGrpc.newBlockingStub(channel).withMaxInboundMessageSize(64 << 20)
                .processBatch(AlertBatch.newBuilder().setBatchId(1).addAllAlerts(alerts).build());
        assertEquals(100, answer.getResultsCount());
    }

    @Test
    void streamAnswersEveryBatchWithItsIdWhileBatchesAreInFlight() throws InterruptedException {
        start("stream");
        List<BatchResult> answers = Collections.synchronizedList(new ArrayList<>());
        CountDownLatch done = new CountDownLatch(1);
        StreamObserver<AlertBatch> requests = AlertWorkerGrpc.newStub(channel).processStream(new StreamObserver<>() {
            @Override
            public void onNext(BatchResult value) {
                answers.add(value);
            }

            @Override
            public void onError(Throwable t) {
                done.countDown();
            }

            @Override
            public void onCompleted() {
                done.countDown();
            }
        });
        // The first batch is the slowest: with batches processed at once, it is answered last.
        for (int b = 0; b < 8; b++) {
            requests.onNext(Alerts.batch(1000 + b, alert(10L * b, b == 0 ? 300 : 0), alert(10L * b + 1, 0)));
        }
        requests.onCompleted();
        assertTrue(done.await(10, TimeUnit.SECONDS));
        Set<Long> ids = new HashSet<>();
        for (BatchResult answer : answers) {
            ids.add(answer.getBatchId());
            assertEquals(2, answer.getResultsCount());
        }
        assertEquals(Set.of(1000L, 1001L, 1002L, 1003L, 1004L, 1005L, 1006L, 1007L), ids);
        assertEquals(1000L, answers.get(answers.size() - 1).getBatchId());
    }

    @Test
    void stopFinishesTheCallInProgressThenRefusesCalls() throws Exception {
        start("graceful");
        var future = AlertWorkerGrpc.newFutureStub(channel).processBatch(Alerts.batch(5, alert(0, 500)));
        assertTrue(processing.await(10, TimeUnit.SECONDS)); // the server has the call, and is working on it
        long started = System.nanoTime();
        server.stop();
        assertTrue(System.nanoTime() - started < TimeUnit.SECONDS.toNanos(4), "stop waited for nothing else");
        assertEquals(Verdict.VERDICT_OK, future.get(5, TimeUnit.SECONDS).getResults(0).getVerdict());
        StatusRuntimeException refused = assertThrows(StatusRuntimeException.class,
                () -> HealthGrpc.newBlockingStub(channel).withDeadlineAfter(2, TimeUnit.SECONDS)
                        .check(HealthCheckRequest.getDefaultInstance()));
        assertEquals(Status.Code.UNAVAILABLE, refused.getStatus().getCode());
    }

    @Test
    void aBusyPortIsAClearError() {
        start("first");
        ServeException busy = assertThrows(ServeException.class, () -> AlertWorkerServer.builder().port(server.port())
                .processor(alert -> Result.forward()).build().start());
        assertTrue(busy.getMessage().contains("is another worker there?"), busy.getMessage());
    }
}
