from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProtocolVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTOCOL_VERSION_UNSPECIFIED: _ClassVar[ProtocolVersion]
    PROTOCOL_VERSION_1: _ClassVar[ProtocolVersion]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_OK: _ClassVar[Verdict]
    VERDICT_RETRY: _ClassVar[Verdict]
    VERDICT_DEAD_LETTER: _ClassVar[Verdict]
PROTOCOL_VERSION_UNSPECIFIED: ProtocolVersion
PROTOCOL_VERSION_1: ProtocolVersion
VERDICT_UNSPECIFIED: Verdict
VERDICT_OK: Verdict
VERDICT_RETRY: Verdict
VERDICT_DEAD_LETTER: Verdict

class DescribeRequest(_message.Message):
    __slots__ = ("sidecar_protocol_version",)
    SIDECAR_PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    sidecar_protocol_version: ProtocolVersion
    def __init__(self, sidecar_protocol_version: _Optional[_Union[ProtocolVersion, str]] = ...) -> None: ...

class WorkerDescription(_message.Message):
    __slots__ = ("name", "version", "protocol_version", "accepts", "preferred_batch_size", "routes", "sdk", "fields")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    SDK_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    protocol_version: ProtocolVersion
    accepts: _containers.RepeatedScalarFieldContainer[str]
    preferred_batch_size: int
    routes: _containers.RepeatedScalarFieldContainer[str]
    sdk: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., protocol_version: _Optional[_Union[ProtocolVersion, str]] = ..., accepts: _Optional[_Iterable[str]] = ..., preferred_batch_size: _Optional[int] = ..., routes: _Optional[_Iterable[str]] = ..., sdk: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("id", "topic", "partition", "offset", "timestamp_ms", "key", "value", "content_type", "headers", "attempt", "source_content_type", "schema_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes
    value: bytes
    content_type: str
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    attempt: int
    source_content_type: str
    schema_id: int
    def __init__(self, id: _Optional[str] = ..., topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., content_type: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., attempt: _Optional[int] = ..., source_content_type: _Optional[str] = ..., schema_id: _Optional[int] = ...) -> None: ...

class AlertBatch(_message.Message):
    __slots__ = ("batch_id", "alerts", "schemas")
    class SchemasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    SCHEMAS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    schemas: _containers.ScalarMap[int, str]
    def __init__(self, batch_id: _Optional[int] = ..., alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., schemas: _Optional[_Mapping[int, str]] = ...) -> None: ...

class AlertOutput(_message.Message):
    __slots__ = ("value", "key", "content_type", "headers", "route", "forward_input")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    FORWARD_INPUT_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    key: bytes
    content_type: str
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    route: str
    forward_input: bool
    def __init__(self, value: _Optional[bytes] = ..., key: _Optional[bytes] = ..., content_type: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., route: _Optional[str] = ..., forward_input: _Optional[bool] = ...) -> None: ...

class AlertResult(_message.Message):
    __slots__ = ("id", "verdict", "outputs", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    verdict: Verdict
    outputs: _containers.RepeatedCompositeFieldContainer[AlertOutput]
    error: str
    def __init__(self, id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., outputs: _Optional[_Iterable[_Union[AlertOutput, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("batch_id", "results")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    results: _containers.RepeatedCompositeFieldContainer[AlertResult]
    def __init__(self, batch_id: _Optional[int] = ..., results: _Optional[_Iterable[_Union[AlertResult, _Mapping]]] = ...) -> None: ...
