"""Where a Confluent schema id's schema comes from: Rubin's ids, a folder, chains, caching, pickling,
and the registry client's answers to a registry that is down or misbehaves.

The registry client against a real registry (Apicurio Registry) is in
tests/integration/test_schema_registry.py. The failures a real registry cannot
be made to produce on demand (an HTTP 500, a registry that accepts the
connection and never answers, credentials refused, a URL that is not a
registry's) are produced here by a few lines of HTTP server each, with the
status and body a Confluent registry documents for them.
"""

from __future__ import annotations

import base64
import http.server
import json
import pickle
import shutil
import socket
import threading
import time

import fastavro
import pytest
from lsst.alert.packet import SchemaRegistry

from alert_worker.codecs import encode_confluent
from alert_worker.testing import rubin_sample
from alert_sidecar.formats import schemas as schemas_module
from alert_sidecar.formats.decoding import decode
from alert_sidecar.exceptions import ConfigError
from alert_sidecar.formats.content import AVRO_CONFLUENT
from alert_sidecar.formats.schemas import (
    ChainedSchemas,
    DirectorySchemas,
    InvalidSchemaError,
    RegistrySchemas,
    RubinSchemas,
    SchemaRegistryUnavailable,
    UnknownSchemaError,
    schema_source,
)
from tests.data import ZTF_PACKETS, ZTF_SCHEMA_DIR

RUBIN = SchemaRegistry.all_schemas_from_filesystem()

SMALL = {"type": "record", "name": "Small", "namespace": "test",
         "fields": [{"name": "id", "type": "long"}, {"name": "flux", "type": ["null", "float"]}]}


def framed(schema_id: int, schema, record) -> bytes:
    return encode_confluent(record, fastavro.parse_schema(schema), schema_id)


def ztf_record() -> dict:
    [packet] = [path for path in ZTF_PACKETS if path.name == "472263571115115000.avro"]
    with open(packet, "rb") as handle:
        return next(fastavro.reader(handle))


# --- Rubin's ids ----------------------------------------------------------------------


@pytest.mark.parametrize("version", sorted(RUBIN.known_versions, key=lambda v: tuple(map(int, v.split(".")))))
def test_every_rubin_version_is_known_by_its_id_and_decodes_its_sample_alert(version):
    major, minor = map(int, version.split("."))
    schema_id = major * 100 + minor  # Rubin's ids encode the version: 7.1 is 701
    assert RUBIN.get_by_version(version).get_schema_id() == schema_id
    source = RubinSchemas()
    text = source.schema_text(schema_id)
    assert "__fastavro" not in text  # plain Avro JSON, as a worker or a registry is given it
    # The text stands alone: it parses with no named types from elsewhere.
    standalone = fastavro.parse_schema(json.loads(text))
    assert standalone["name"].endswith(f"v{major}_{minor}.alert")
    record = rubin_sample(version)
    decoded, got_id = decode(framed(schema_id, standalone, record), AVRO_CONFLUENT, source)
    assert got_id == schema_id
    assert decoded == record


def test_rubin_knows_what_lsst_alert_packet_ships_and_nothing_else():
    source = RubinSchemas()
    assert source.known_ids() == frozenset(RUBIN.known_ids)
    with pytest.raises(UnknownSchemaError) as err:
        source.parsed(1299)
    message = str(err.value)
    assert "schema id 1299" in message and "lsst-alert-packet" in message and "\n" not in message


def test_rubin_without_lsst_alert_packet_says_how_to_install_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_packet(name, *args, **kwargs):
        if name.startswith("lsst.alert.packet"):
            raise ImportError("No module named 'lsst.alert.packet'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_packet)
    with pytest.raises(UnknownSchemaError, match="pip install lsst-alert-packet"):
        RubinSchemas().parsed(701)


# --- A folder of .avsc files -----------------------------------------------------------


def test_directory_self_contained_id_file(tmp_path):
    (tmp_path / "42.avsc").write_text(json.dumps(SMALL))
    source = DirectorySchemas(tmp_path)
    record = {"id": 2**62 + 5, "flux": 1.5}
    assert decode(framed(42, SMALL, record), AVRO_CONFLUENT, source) == (record, 42)
    assert json.loads(source.schema_text(42)) == SMALL


def test_directory_in_ztfs_layout_resolves_named_types_from_the_other_files(tmp_path):
    # ZTF's schema folder as ZTF publishes it, plus the id file: alert.avsc refers
    # to ztf.alert.candidate, ztf.alert.cutout, ... defined in the other files.
    copied = [shutil.copy(avsc, tmp_path / avsc.name) for avsc in ZTF_SCHEMA_DIR.glob("*.avsc")]
    assert len(copied) == 5
    shutil.copy(ZTF_SCHEMA_DIR / "alert.avsc", tmp_path / "7.avsc")
    source = DirectorySchemas(tmp_path)
    text = source.schema_text(7)
    standalone = fastavro.parse_schema(json.loads(text))  # no named types needed from elsewhere
    record = ztf_record()
    # ZTF's packet is schema 3.3, the folder 4.02: write the record as 4.02 would.
    writer = fastavro.parse_schema(json.loads(text))
    value = framed(7, writer, _fit(record, writer))
    decoded, schema_id = decode(value, AVRO_CONFLUENT, source)
    assert schema_id == 7
    assert decoded["candid"] == record["candid"] == 472263571115115000
    assert decoded["cutoutScience"]["stampData"] == record["cutoutScience"]["stampData"]
    assert standalone["name"] == "ztf.alert"


def _fit(record: dict, schema: dict) -> dict:
    """The record with the fields a newer ZTF schema added set to their defaults (or None)."""
    out = {}
    for field in schema["fields"]:
        name = field["name"]
        value = record.get(name, field.get("default"))
        kind = field["type"]
        inner = next((t for t in kind if isinstance(t, dict)), None) if isinstance(kind, list) else kind
        if isinstance(inner, dict) and inner.get("type") == "record" and isinstance(value, dict):
            value = _fit(value, inner)
        elif isinstance(inner, dict) and inner.get("type") == "array" and isinstance(value, list):
            items = inner["items"]
            items = next((t for t in items if isinstance(t, dict)), items) if isinstance(items, list) else items
            if isinstance(items, dict) and items.get("type") == "record":
                value = [_fit(v, items) for v in value]
        out[name] = value
    return out


def test_directory_unknown_invalid_and_dangling_ids_say_which_file(tmp_path):
    (tmp_path / "1.avsc").write_text("{not json")
    (tmp_path / "2.avsc").write_text(json.dumps({"type": "record", "name": "A",
                                                 "fields": [{"name": "c", "type": "ztf.alert.candidate"}]}))
    source = DirectorySchemas(tmp_path)
    with pytest.raises(UnknownSchemaError, match=r"no 3\.avsc in ") as unknown:
        source.parsed(3)
    assert not isinstance(unknown.value, InvalidSchemaError)
    with pytest.raises(InvalidSchemaError, match=r"1\.avsc is not JSON"):
        source.parsed(1)
    with pytest.raises(InvalidSchemaError, match="ztf.alert.candidate"):
        source.parsed(2)


def test_directory_finds_an_id_file_added_later(tmp_path):
    source = DirectorySchemas(tmp_path)
    with pytest.raises(UnknownSchemaError):
        source.parsed(5)
    (tmp_path / "5.avsc").write_text(json.dumps(SMALL))
    assert source.parsed(5)["name"] == "test.Small"


def test_directory_that_does_not_exist_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        DirectorySchemas(tmp_path / "nowhere")


# --- Chains ------------------------------------------------------------------------------


def test_chain_asks_in_order_and_names_every_source_when_none_knows(tmp_path):
    (tmp_path / "701.avsc").write_text(json.dumps(SMALL))  # shadows Rubin's 7.1, as a folder listed first should
    chain = schema_source(None, tmp_path)
    assert isinstance(chain, ChainedSchemas)
    assert chain.parsed(701)["name"] == "test.Small"
    assert chain.parsed(1101)["name"] == "lsst.v11_1.alert"  # not in the folder: Rubin's
    with pytest.raises(UnknownSchemaError) as err:
        chain.parsed(77)
    message = str(err.value)
    assert f"schema folder {tmp_path}" in message and "Rubin's schemas" in message
    assert "no 77.avsc" in message


def test_chain_does_not_pass_an_unusable_schema_on_to_the_next_source(tmp_path):
    (tmp_path / "701.avsc").write_text('{"type": "record"}')
    with pytest.raises(InvalidSchemaError):
        schema_source(None, tmp_path).parsed(701)


def test_chain_does_not_fall_back_when_the_registry_is_down():
    # Rubin knows 701, but the registry listed first might give 701 another schema.
    chain = ChainedSchemas([RegistrySchemas(f"http://127.0.0.1:{closed_port()}", timeout=1), RubinSchemas()])
    with pytest.raises(SchemaRegistryUnavailable):
        chain.parsed(701)


def test_schema_source_builds_what_the_command_line_asks(tmp_path):
    assert isinstance(schema_source(None, None), RubinSchemas)
    chain = schema_source("http://localhost:8081", tmp_path)
    assert [type(s) for s in chain.sources] == [DirectorySchemas, RegistrySchemas, RubinSchemas]


# --- Caching and pickling -------------------------------------------------------------------


def test_each_id_is_read_and_parsed_once(tmp_path, monkeypatch):
    (tmp_path / "42.avsc").write_text(json.dumps(SMALL))
    parses = []
    real_parse = fastavro.parse_schema
    monkeypatch.setattr(schemas_module.fastavro, "parse_schema", lambda s, *a, **k: parses.append(1) or real_parse(s))
    chain = schema_source(None, tmp_path)
    first = chain.parsed(42)
    (tmp_path / "42.avsc").unlink()  # read once: no need for the file any more
    assert chain.parsed(42) is first
    assert chain.schema_text(42) == json.dumps(SMALL)
    assert len(parses) == 1


def test_sources_pickle_without_their_caches_and_work_after(tmp_path):
    (tmp_path / "42.avsc").write_text(json.dumps(SMALL))
    # (Rubin before the registry here only so that this test needs no registry.)
    chain = ChainedSchemas([DirectorySchemas(tmp_path), RubinSchemas(),
                            RegistrySchemas("https://alice:s3cret@registry.example:8443/ccompat")])
    chain.parsed(42)
    chain.parsed(1101)
    copy = pickle.loads(pickle.dumps(chain))
    assert copy._parsed == {} and copy.sources[1]._rubin is None and copy.sources[0]._texts == {}
    assert copy.parsed(42)["name"] == "test.Small"
    assert copy.parsed(1101)["name"] == "lsst.v11_1.alert"
    registry = copy.sources[2]
    assert registry.url == "https://registry.example:8443/ccompat"
    assert base64.b64decode(registry._authorization.split()[1]) == b"alice:s3cret"
    assert len(pickle.dumps(chain)) < 2000  # nothing fetched or parsed rides along to a worker process


# --- The registry client's failures, against small HTTP servers ----------------------------------


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's (status, body); records requests."""

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self._answer()

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
        status, body = self.server.answer
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.requests = []
    server.answer = (200, {})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server, userinfo=""):
    return f"http://{userinfo}127.0.0.1:{server.server_address[1]}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed when the block ends: nothing listens there


def test_a_registry_not_listening_is_unavailable_at_once():
    source = RegistrySchemas(f"http://127.0.0.1:{closed_port()}", timeout=5)
    started = time.monotonic()
    with pytest.raises(SchemaRegistryUnavailable) as err:
        source.parsed(1)
    assert time.monotonic() - started < 2
    assert "refused" in str(err.value).lower()


def test_a_registry_that_never_answers_is_unavailable_within_the_timeout():
    # Listening, so the connection is made, but nothing ever reads or answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        source = RegistrySchemas(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(SchemaRegistryUnavailable, match=r"no answer within 0\.5 s"):
            source.parsed(1)
        assert time.monotonic() - started < 2.0


def test_a_registry_answering_500_is_unavailable_and_the_message_says_so(stub):
    stub.answer = (500, {"error_code": 50001, "message": "Error in the backend data store"})
    with pytest.raises(SchemaRegistryUnavailable) as err:
        RegistrySchemas(url_of(stub)).parsed(3)
    message = str(err.value)
    assert "HTTP 500" in message and "50001" in message and "\n" not in message


def test_404_with_error_code_40403_is_an_unknown_schema_remembered_briefly(stub):
    stub.answer = (404, {"error_code": 40403, "message": "Schema not found"})
    source = RegistrySchemas(url_of(stub))
    for _ in range(3):
        with pytest.raises(UnknownSchemaError, match="schema id 9 is unknown to schema registry"):
            source.parsed(9)
    assert len(stub.requests) == 1  # a burst of alerts with one bad id costs one request


def test_404_without_a_confluent_error_code_is_a_wrong_url_not_an_unknown_schema(stub):
    stub.answer = (404, {"status": 404, "title": "Not Found"})
    with pytest.raises(SchemaRegistryUnavailable, match="ccompat"):
        RegistrySchemas(url_of(stub)).parsed(1)


def test_basic_auth_from_the_url_is_sent_and_the_password_never_shown(stub):
    stub.answer = (401, {"error_code": 40101, "message": "Unauthorized"})
    source = RegistrySchemas(url_of(stub, "reader:p%40ss@"))
    with pytest.raises(SchemaRegistryUnavailable) as err:
        source.parsed(1)
    assert "credentials" in str(err.value) and "p@ss" not in str(err.value) and "p%40ss" not in str(err.value)
    assert "reader:***@" in source.describe()
    headers = stub.requests[0][2]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"reader:p@ss").decode()


def test_register_posts_confluents_request(stub):
    stub.answer = (200, {"id": 17})
    source = RegistrySchemas(url_of(stub) + "/apis/ccompat/v7/")
    text = json.dumps(SMALL)
    assert source.register("alerts.bright-value", text) == 17
    assert source.register("alerts.bright-value", text) == 17
    assert len(stub.requests) == 1  # the same schema under the same subject is asked once
    method, path, headers, body = stub.requests[0]
    assert (method, path) == ("POST", "/apis/ccompat/v7/subjects/alerts.bright-value/versions")
    assert headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
    assert json.loads(body) == {"schema": text}
    assert source.parsed(17)["name"] == "test.Small"  # what it registered, it knows


def test_a_non_avro_schema_is_not_usable(stub):
    stub.answer = (200, {"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"})
    with pytest.raises(InvalidSchemaError, match="PROTOBUF schema, not Avro"):
        RegistrySchemas(url_of(stub)).parsed(4)


@pytest.mark.parametrize("url", ["localhost:8081", "ftp://host/x", "http://", "http://host:99999"])
def test_a_registry_url_that_is_not_http_is_a_config_error(url):
    with pytest.raises(ConfigError):
        RegistrySchemas(url)


def test_a_broken_file_of_named_types_is_said_when_the_folder_is_given(tmp_path):
    (tmp_path / "candidate.avsc").write_text("{oops")
    with pytest.raises(ConfigError, match=r"candidate\.avsc is not a readable schema file"):
        DirectorySchemas(tmp_path)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_checks_the_registrys_certificate(stub, tmp_path):
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    stub.socket = context.wrap_socket(stub.socket, server_side=True)
    stub.answer = (200, {"schema": json.dumps(SMALL)})
    url = f"https://127.0.0.1:{stub.server_address[1]}"
    with pytest.raises(SchemaRegistryUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        RegistrySchemas(url).parsed(1)  # a self-signed certificate is not trusted by default
    assert RegistrySchemas(url, cafile=str(cert)).parsed(1)["name"] == "test.Small"
