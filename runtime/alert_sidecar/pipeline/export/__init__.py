"""``alert-pipeline export``: a pipeline file as Kubernetes manifests, a Helm chart or a compose file.

Each stage runs as ``pipeline/commands.py`` says (the one place that turns a
stage into ``alert-sidecar`` options); what the exports add is where it runs:

- ``kubernetes.py``: the objects of ``export k8s`` (Deployments, ConfigMap,
  Secrets, KEDA ScaledObjects, a PodMonitor), with ``strimzi.py`` for the
  Kafka clusters, topics and users Strimzi manages;
- ``helm.py``: the same objects as a chart, each setting a user may change a
  Helm value (``values.py`` is how one builder serves both);
- ``compose.py``: one machine, with Kafka in containers;
- ``images.py``: the images the exports name, made by ``deploy/docker/``.
"""
