"""A test worker that answers each alert with its decoded record as JSON.

--accepts json: the sidecar decodes (optionally projected with --fields) and
the worker passes the JSON form on; --accepts avro: the worker receives raw
Avro (with the batch's writer schemas) and decodes it itself.
"""

import argparse

import alert_worker
from alert_worker import Output

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
parser.add_argument("--accepts", choices=["json", "avro"], required=True)
parser.add_argument("--fields", nargs="*", default=[])
args = parser.parse_args()

ACCEPTS = {
    "json": ["application/json"],
    "avro": ["application/vnd.apache.avro+confluent", "application/vnd.apache.avro.ocf"],
}[args.accepts]


@alert_worker.worker(name=f"echo-{args.accepts}", version="1", accepts=ACCEPTS, fields=args.fields)
def echo(alert: alert_worker.Alert):
    if args.accepts == "json":
        assert alert.content_type == "application/json"
        return Output(value=alert.value, content_type="application/json",
                      headers=[("schema-id", str(alert.schema_id).encode()),
                               ("source-content-type", alert.source_content_type.encode())])
    return Output.json(alert.record(), headers=[("schema-id", str(alert.schema_id).encode())])


alert_worker.serve(echo, port=args.port)
