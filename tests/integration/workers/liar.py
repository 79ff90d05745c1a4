"""A test worker that breaks the contract in the way --mode names, with raw generated stubs.

Modes: missing (answers one result fewer than alerts), garbage (answers bytes
that are not a BatchResult), unknown-verdict (answers verdict 7), no-health
(serves AlertWorker but not the health service), unbound-route (keeps alerts on
a route it never declared).
"""

import argparse
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from alertsidecar.v1 import worker_pb2, worker_pb2_grpc

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--mode", required=True)
args = parser.parse_args()


class Liar(worker_pb2_grpc.AlertWorkerServicer):
    attempts: dict[str, int] = {}

    def Describe(self, request, context):
        return worker_pb2.WorkerDescription(name=f"liar-{args.mode}", version="1",
                                            protocol_version=worker_pb2.PROTOCOL_VERSION_1)

    def ProcessBatch(self, request, context):
        results = []
        for alert in request.alerts:
            result = worker_pb2.AlertResult(id=alert.id, verdict=worker_pb2.VERDICT_OK)
            if args.mode == "unknown-verdict":
                # The first answer is a verdict from a future contract (RETRY by the rules), then OK.
                seen = self.attempts.get(alert.id, 0)
                self.attempts[alert.id] = seen + 1
                if seen == 0:
                    result.verdict = 7
                else:
                    result.outputs.add(forward_input=True)
            elif args.mode == "unbound-route":
                result.outputs.add(forward_input=True, route="secret")
            results.append(result)
        if args.mode == "missing":
            results = results[:-1]
        return worker_pb2.BatchResult(batch_id=request.batch_id, results=results)


def garbage_batch(request_bytes, context):
    return b"\xff\xff\xff\xff not a BatchResult"


server = grpc.server(futures.ThreadPoolExecutor(4))
if args.mode == "garbage":
    # ProcessBatch answers raw bytes that do not parse; Describe stays honest.
    handlers = {
        "Describe": grpc.unary_unary_rpc_method_handler(
            Liar().Describe, request_deserializer=worker_pb2.DescribeRequest.FromString,
            response_serializer=worker_pb2.WorkerDescription.SerializeToString),
        "ProcessBatch": grpc.unary_unary_rpc_method_handler(
            garbage_batch, request_deserializer=None, response_serializer=None),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("alertsidecar.v1.AlertWorker", handlers)])
else:
    worker_pb2_grpc.add_AlertWorkerServicer_to_server(Liar(), server)
if args.mode != "no-health":
    status = health.HealthServicer()
    status.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(status, server)
server.add_insecure_port(f"127.0.0.1:{args.port}")
server.start()
server.wait_for_termination()
