"""alert-sidecar: the Kafka side of one stage of an alert pipeline.

The sidecar consumes an input buffer (a Kafka topic) as a member of a consumer
group, sends alerts to workers over the contract in ``proto/``, produces their
outputs to output buffers and commits input offsets only once every output is
acknowledged. See ``stage.py`` for the loop that ties the pieces together.
"""

__version__ = "0.1.0"
