"""The REST API fuzzed from its own OpenAPI document: every documented operation, with
path parameters, query values and JSON bodies drawn by hypothesis (hostile text, wrong types,
nested junk), under an admin's and an auditor's token. No answer may be a 5xx but a 503
(store unavailable, which does not happen here), every answer is JSON, and every error names
itself in "error". SQLite only: the PostgreSQL behaviour of each operation is in test_api.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from smimegate import config as cfg
from smimegate.service import accounts, domains, users
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from smimegate.web.app import build_app
from smimegate.web.openapi import document
from tests.unit.web.conftest import PASSWORD, SETUP

OPERATIONS = [(path, method) for path, item in document()["paths"].items()
              for method in item]

_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["example.com", "bob@example.com", "*.example.com", "sign", "phone",
                     "encrypt_mode", "..", "%2e%2e", "a@b@c", "x" * 400, "\u0000", "é.test",
                     "' OR 1=1 --", "<script>", "yes", "mandatory"]),
)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_bodies = st.one_of(
    _json,
    st.fixed_dictionaries({"value": _json}),
    st.fixed_dictionaries({"name": _text, "properties": st.dictionaries(_text, _json,
                                                                        max_size=3)}),
    st.fixed_dictionaries({"email": _text, "enabled": _json}),
)


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
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
    config = cfg.loads(f'[store]\nurl = "{url}"\nmaster_key_file = "{Path(key)}"\n')
    client = TestClient(build_app(store, config), raise_server_exceptions=True)
    yield (client, accounts.new_token(store, SETUP, "alice"),
           accounts.new_token(store, SETUP, "otto"))
    store.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(operation=st.sampled_from(OPERATIONS), params=st.dictionaries(
    st.sampled_from(["domain", "email", "property", "status"]), _text, max_size=4),
    body=_bodies, auditor=st.booleans())
def test_no_operation_fails_with_a_server_error(
    fuzz_site: tuple[TestClient, str, str], operation: tuple[str, str],
    params: dict[str, str], body: Any, auditor: bool,
) -> None:
    client, admin_token, auditor_token = fuzz_site
    path, method = operation
    for name in ("domain", "email", "property"):
        # Percent-encoded as a client puts any text into a path segment (RFC 3986 2.1).
        path = path.replace("{" + name + "}", quote(params.get(name, "x") or "x", safe=""))
    query = {k: v for k, v in params.items() if k == "status"}
    answer = client.request(
        method.upper(), path, params=query,
        json=body if method in ("put", "post") else None,
        headers={"authorization": f"Bearer {auditor_token if auditor else admin_token}"})
    assert answer.status_code < 500, (method, path, body, answer.text)
    if answer.status_code != 204:
        payload = answer.json()
        if answer.status_code >= 400:
            assert isinstance(payload["error"], str) and payload["error"]
    if auditor and method != "get":
        assert answer.status_code in (403, 404, 405), (method, path)
