"""A whole pipeline in one file: stages, the Kafka buffers between them, and the clusters they live on.

``load`` reads and checks a pipeline file into a ``Pipeline`` (model.py);
``alert-pipeline`` (cli.py) is the command that works on one.
"""

from alert_sidecar.pipeline.load import Diagnostic, PipelineError, load, loads, schema
from alert_sidecar.pipeline.model import BufferSpec, ClusterSpec, Pipeline, StageSpec, WorkerSpec
