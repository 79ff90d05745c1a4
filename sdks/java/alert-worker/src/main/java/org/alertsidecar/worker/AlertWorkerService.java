package org.alertsidecar.worker;

import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.RejectedExecutionException;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.alertsidecar.v1.AlertBatch;
import org.alertsidecar.v1.AlertResult;
import org.alertsidecar.v1.AlertWorkerGrpc;
import org.alertsidecar.v1.BatchResult;
import org.alertsidecar.v1.DescribeRequest;
import org.alertsidecar.v1.WorkerDescription;

/**
 * The AlertWorker service over one worker: transport only; every call hands its alerts to
 * {@link Processing}.
 */
final class AlertWorkerService extends AlertWorkerGrpc.AlertWorkerImplBase {
    private static final Logger LOG = Logger.getLogger("org.alertsidecar.worker");

    private final WorkerDescription description;
    private final Processing processing;
    private final ExecutorService streamPool;
    /** Batches of one stream read ahead of their answers: enough to keep every thread of the pool busy. */
    private final int streamWindow;

    private final Object lock = new Object();
    private boolean stopping;
    private final Set<StreamCall> streams = new HashSet<>();

    AlertWorkerService(WorkerDescription description, Processing processing, ExecutorService streamPool,
                       int streamWindow) {
        this.description = description;
        this.processing = processing;
        this.streamPool = streamPool;
        this.streamWindow = streamWindow;
    }

    @Override
    public void describe(DescribeRequest request, StreamObserver<WorkerDescription> responses) {
        responses.onNext(description);
        responses.onCompleted();
    }

    @Override
    public void processAlert(org.alertsidecar.v1.Alert request, StreamObserver<AlertResult> responses) {
        responses.onNext(processing.process(List.of(request), Map.of()).get(0));
        responses.onCompleted();
    }

    @Override
    public void processBatch(AlertBatch request, StreamObserver<BatchResult> responses) {
        responses.onNext(processing.processBatch(request));
        responses.onCompleted();
    }

    @Override
    public StreamObserver<AlertBatch> processStream(StreamObserver<BatchResult> responses) {
        ServerCallStreamObserver<BatchResult> call = (ServerCallStreamObserver<BatchResult>) responses;
        // Flow control by hand: a batch is read only when there is room for it in the window, so a
        // sidecar that sends faster than the worker decides is held back by HTTP/2, not by memory.
        call.disableAutoRequest();
        StreamCall stream = new StreamCall(call);
        synchronized (lock) {
            if (stopping) {
                call.onError(Status.UNAVAILABLE.withDescription("the worker is shutting down").asRuntimeException());
                return new StreamObserver<>() {
                    @Override
                    public void onNext(AlertBatch value) {
                    }

                    @Override
                    public void onError(Throwable t) {
                    }

                    @Override
                    public void onCompleted() {
                    }
                };
            }
            streams.add(stream);
        }
        call.setOnCancelHandler(stream::cancelled);
        call.request(streamWindow);
        return stream;
    }

    private void streamEnded(StreamCall stream) {
        synchronized (lock) {
            streams.remove(stream);
        }
    }

    /** Refuse new streams, and end open ones once the batches they are processing are answered. */
    void beginShutdown() {
        List<StreamCall> open;
        synchronized (lock) {
            stopping = true;
            open = List.copyOf(streams);
        }
        for (StreamCall stream : open) {
            stream.stop();
        }
    }

    /**
     * One ProcessStream call: batches processed on the pool, several at once, each answered as soon as it
     * is done (answers may come in any order, as the contract allows); writes to the call serialized.
     */
    private final class StreamCall implements StreamObserver<AlertBatch> {
        private final ServerCallStreamObserver<BatchResult> call;
        private int inFlight;
        private boolean halfClosed;
        private boolean stopped;
        private boolean ended;

        StreamCall(ServerCallStreamObserver<BatchResult> call) {
            this.call = call;
        }

        @Override
        public void onNext(AlertBatch batch) {
            synchronized (this) {
                if (ended || stopped) {
                    return; // not answered: the sidecar sends it again, to this worker or another
                }
                inFlight++;
            }
            try {
                streamPool.execute(() -> answer(batch));
            } catch (RejectedExecutionException exc) {
                synchronized (this) {
                    inFlight--;
                }
                fail(Status.UNAVAILABLE.withDescription("the worker is shutting down"));
            }
        }

        private void answer(AlertBatch batch) {
            BatchResult result;
            try {
                result = processing.processBatch(batch);
            } catch (RuntimeException | Error exc) {
                // Processing answers every alert whatever the worker's code does: this is a bug of the SDK.
                LOG.log(Level.SEVERE, "ProcessStream: batch " + batch.getBatchId() + " failed", exc);
                synchronized (this) {
                    inFlight--;
                }
                fail(Status.INTERNAL.withDescription("the worker failed on batch " + batch.getBatchId() + ": " + exc));
                return;
            }
            synchronized (this) {
                inFlight--;
                if (ended) {
                    return;
                }
                try {
                    call.onNext(result);
                } catch (RuntimeException exc) {
                    endQuietly(); // the call was cancelled meanwhile: nobody is listening
                    return;
                }
                if (!stopped && !halfClosed) {
                    call.request(1);
                }
                settle();
            }
        }

        /** Ends the call if nothing is left to answer: completed by the sidecar, or stopped by us. */
        private void settle() {
            if (ended || inFlight > 0) {
                return;
            }
            if (halfClosed) {
                ended = true;
                call.onCompleted();
                streamEnded(this);
            } else if (stopped) {
                ended = true;
                call.onError(Status.UNAVAILABLE.withDescription("the worker is shutting down").asRuntimeException());
                streamEnded(this);
            }
        }

        private void fail(Status status) {
            synchronized (this) {
                if (ended) {
                    return;
                }
                ended = true;
                try {
                    call.onError(status.asRuntimeException());
                } catch (RuntimeException ignored) {
                    // already cancelled
                }
            }
            streamEnded(this);
        }

        private void endQuietly() {
            ended = true;
            streamEnded(this);
        }

        synchronized void stop() {
            stopped = true;
            settle();
        }

        synchronized void cancelled() {
            endQuietly();
        }

        @Override
        public void onError(Throwable t) {
            synchronized (this) {
                endQuietly();
            }
        }

        @Override
        public void onCompleted() {
            synchronized (this) {
                halfClosed = true;
                settle();
            }
        }
    }
}
