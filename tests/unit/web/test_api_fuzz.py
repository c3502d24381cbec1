"""The REST API fuzzed from its own OpenAPI document: every documented operation, with path
parameters, query values and JSON bodies drawn by hypothesis from the operation's schemas
(values of the documented types and enums, real certificate and CRL files as base64, the
token account's password now and then, so the deep paths run too) or as junk (hostile text,
wrong types, nested junk), under an admin's and an auditor's token. No answer may be a 5xx but
a 503 (store unavailable, which does not happen here), every JSON answer that is an error
names itself in "error", and an auditor changes nothing. SQLite only: the PostgreSQL
behaviour of each operation is in test_api*.py. Mail and SMS go nowhere (a closed loopback
port, a file).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from smimegate import config as cfg
from smimegate.service import accounts, cas, domains, users
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from smimegate.web.app import build_app
from smimegate.web.openapi import document
from tests.helpers.testpki import TestCA
from tests.unit.web.conftest import PASSWORD, SETUP

DOC = document()
OPERATIONS = [(path, method) for path, item in DOC["paths"].items() for method in item]
READS = {"/api/v1/explain"}  # POSTs that change nothing: an auditor may call them
_CA = TestCA(key_kind="ec-p256")
_LEAF = _CA.issue("carol@example.com")
_FILES = [_CA.cert_pem(), _LEAF.cert.public_bytes(Encoding.DER), b"-----BEGIN CERTIFICATE-----",
          b"\x30\x82\x01\x00junk", b"not a certificate"]

_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["example.com", "bob@example.com", "*.example.com", "sign", "phone",
                     "encrypt_mode", "..", "%2e%2e", "a@b@c", "x" * 400, "\u0000", "é.test",
                     "' OR 1=1 --", "<script>", "yes", "mandatory", PASSWORD, "Example CA",
                     "+31201234567", "01:AB", "keyCompromise", "ec-p256", "modern"]),
)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_junk_bodies = st.one_of(
    _json,
    st.fixed_dictionaries({"value": _json}),
    st.fixed_dictionaries({"name": _text, "properties": st.dictionaries(_text, _json,
                                                                        max_size=3)}),
    st.fixed_dictionaries({"email": _text, "enabled": _json}),
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of a (small subset of) JSON Schema, as the document uses it."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "examples" in schema:  # mostly a good value: the operation then runs past its checks
        return st.sampled_from(schema["examples"]) | from_schema(
            {k: v for k, v in schema.items() if k != "examples"})
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        props, required = schema["properties"], set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required})
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), max_size=3)
    if kind == "integer":
        low, high = schema.get("minimum", -(2**40)), schema.get("maximum", 2**40)
        return st.integers(low - 1, min(high, 10**6) + 1)
    if kind == "boolean":
        return st.booleans()
    if kind == "string" and schema.get("contentEncoding") == "base64":
        return st.sampled_from(_FILES).map(lambda b: base64.b64encode(b).decode()) | _text
    if kind == "string":
        return _text
    return _json


def _body(path: str, method: str) -> st.SearchStrategy[Any]:
    content = DOC["paths"][path][method].get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return _junk_bodies if schema is None else from_schema(schema) | _junk_bodies


def _query(path: str, method: str) -> st.SearchStrategy[dict[str, Any]]:
    params = [p for p in DOC["paths"][path][method].get("parameters", ())
              if p["in"] == "query"]
    return st.fixed_dictionaries({}, optional={
        p["name"]: from_schema(p["schema"]).map(str) | _text for p in params})


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], Any]:
    path, method = draw(st.sampled_from(OPERATIONS))
    return path, method, draw(_query(path, method)), draw(_body(path, method))


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str,
                                                                          dict[str, list[str]]]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    key = tmp / "master.key"
    ensure_master_key(key)
    url = f"sqlite:///{tmp / 'store.db'}"
    store = SqlStore.open(url, key, check_schema=False, create=True)
    store.migrate()
    accounts.add(store, SETUP, "alice", "admin", PASSWORD)
    accounts.add(store, SETUP, "otto", "auditor", PASSWORD)
    domains.add(store, SETUP, "example.com")
    users.add(store, SETUP, "bob@example.com")
    ca = cas.create(store, SETUP, cas.CaOptions("Example Root", "Example CA", key_type="ec-p256",
                                                default=True))
    store.add_certificate(_LEAF.cert)
    store.enqueue("sms", b"not a job")
    config = cfg.loads(f'[store]\nurl = "{url}"\nmaster_key_file = "{Path(key)}"\n'
                       '[smtp]\nrelay = "127.0.0.1:9"\ntimeout = 1\n'
                       f'[sms]\ntransport = "file"\nfile = "{tmp / "sms.txt"}"\n'
                       "[crl]\nfetch_timeout = 1\n")
    # localhost: a name every configuration answers to ([web] allowed_hosts).
    client = TestClient(build_app(store, config), raise_server_exceptions=True,
                        base_url="http://localhost")
    names = {"fingerprint": [r.fingerprint for r in store.list_certificates()],
             "name": [ca.name], "id": ["1", "2"]}
    yield (client, accounts.new_token(store, SETUP, "alice"),
           accounts.new_token(store, SETUP, "otto"), names)
    store.close()


@settings(max_examples=1500, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=requests(), params=st.dictionaries(
    st.sampled_from(["domain", "email", "property", "fingerprint", "name", "id"]), _text,
    max_size=6), known=st.booleans(), auditor=st.booleans())
def test_no_operation_fails_with_a_server_error(
    fuzz_site: tuple[TestClient, str, str, dict[str, list[str]]],
    request: tuple[str, str, dict[str, Any], Any], params: dict[str, str], known: bool,
    auditor: bool,
) -> None:
    client, admin_token, auditor_token, names = fuzz_site
    path, method, query, body = request
    for name in ("domain", "email", "property", "fingerprint", "name", "id"):
        value = params.get(name, "x") or "x"
        if known and names.get(name):
            value = names[name][len(value) % len(names[name])]
        # Percent-encoded as a client puts any text into a path segment (RFC 3986 2.1).
        path = path.replace("{" + name + "}", quote(value, safe=""))
    if path == "/api/v1/crls/fetch" and isinstance(body, dict):
        body.pop("urls", None)  # no download from anywhere but the store's (none) here
    answer = client.request(
        method.upper(), path, params=query,
        json=body if method in ("put", "post") else None,
        headers={"authorization": f"Bearer {auditor_token if auditor else admin_token}"})
    assert answer.status_code < 500, (method, path, query, body, answer.text)
    # --hypothesis-show-statistics: which operations got past their checks how often.
    event(f"{method} {request[0]} -> {answer.status_code}")
    if answer.headers.get("content-type", "").startswith("application/json"):
        payload = answer.json()
        if answer.status_code >= 400:
            assert isinstance(payload["error"], str) and payload["error"]
    else:
        assert answer.status_code < 300 or answer.status_code == 401, answer.text
    if auditor and method != "get" and request[0] not in READS:
        assert answer.status_code in (403, 404, 405), (method, path)
