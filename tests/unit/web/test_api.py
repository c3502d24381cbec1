"""The REST API: bearer tokens (401 missing or wrong, 403 for an auditor's change), the CLI's
--json shapes from the same functions, errors as JSON, the OpenAPI document."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from smimegate.cli.main import main
from smimegate.service import accounts, audit
from smimegate.service.actor import Actor
from smimegate.store import SqlStore
from smimegate.web.app import build_app
from tests.helpers.testpki import TestCA
from tests.unit.web.conftest import Site


def cli_json(site: Site, capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    assert main(["-c", str(site.config_path), *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_tokens_are_required(site: Site) -> None:
    for client in (site.api(), site.api("sgw_wrong"), site.api("")):
        answer = client.get("/api/v1/domains/example.com")
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "error" in answer.json()
    assert 'error="invalid_token"' in site.api("sgw_wrong").get(
        "/api/v1/domains").headers["www-authenticate"]
    basic = site.client()
    basic.headers["authorization"] = "Basic YWxpY2U6eA=="
    assert basic.put("/api/v1/domains/example.com/sign", json={"value": "no"}).status_code == 401
    assert site.store.get_domain("example.com").properties == {"locality": "internal"}


def test_get_and_put_as_the_cli_shows(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    api = site.api(site.admin_token)
    answer = api.put("/api/v1/domains/example.com/encrypt_mode", json={"value": "Mandatory"})
    assert answer.status_code == 200
    assert answer.json()["encrypt_mode"] == {"value": "mandatory", "from": "domain"}
    assert api.put("/api/v1/users/Bob@example.com/sign", json={"value": False}).status_code == 200
    assert api.put("/api/v1/settings/key_transport", json={"value": "rsa-oaep"}).status_code == 200
    assert api.get("/api/v1/domains/example.com").json() == cli_json(
        site, capsys, "domain", "show", "example.com", "--json")
    user = api.get("/api/v1/users/bob@example.com").json()
    assert user == cli_json(site, capsys, "user", "show", "bob@example.com", "--json")
    assert user["sign"] == {"value": "no", "from": "user"}
    assert user["encrypt_mode"] == {"value": "mandatory", "from": "domain"}
    assert api.get("/api/v1/settings").json() == cli_json(site, capsys, "settings", "show",
                                                          "--json")
    assert api.get("/api/v1/domains").json() == cli_json(site, capsys, "domain", "list",
                                                         "--json")
    assert api.get("/api/v1/users").json() == cli_json(site, capsys, "user", "list", "--json")
    # DELETE of a property: inherit again.
    inherited = api.delete("/api/v1/users/bob@example.com/sign").json()
    assert inherited["sign"] == {"value": "yes", "from": "default"}
    trail = audit.entries(site.store, search="bob@")
    assert [(e.action, e.actor, e.via, e.address) for e in trail[:2]] == [
        ("user.unset", "alice", "api", "testclient"), ("user.set", "alice", "api", "testclient")]


def test_add_and_remove(site: Site) -> None:
    api = site.api(site.admin_token)
    added = api.post("/api/v1/domains", json={"name": "Partner.TEST",
                                              "properties": {"smime": "deny"}})
    assert added.status_code == 201
    assert added.json() == {"name": "partner.test", "properties": {"smime": "deny"}}
    assert api.post("/api/v1/domains", json={"name": "partner.test"}).status_code == 409
    user = api.post("/api/v1/users", json={"email": "carol@partner.test", "enabled": False})
    assert user.status_code == 201 and user.json()["enabled"] is False
    assert api.delete("/api/v1/users/carol@partner.test").status_code == 204
    assert api.delete("/api/v1/domains/partner.test").status_code == 204
    assert api.delete("/api/v1/domains/partner.test").status_code == 404


def test_an_auditor_reads_and_is_refused_every_change(site: Site) -> None:
    api = site.api(site.auditor_token)
    assert api.get("/api/v1/domains/example.com").status_code == 200
    assert api.get("/api/v1/certificates").status_code == 200
    before = audit.entries(site.store)
    for method, path, body in [
        ("PUT", "/api/v1/domains/example.com/sign", {"value": "no"}),
        ("PUT", "/api/v1/domains/example.com/sign", {"value": "not a value"}),
        ("PUT", "/api/v1/users/bob@example.com/sign", {"value": "no"}),
        ("PUT", "/api/v1/settings/sign", {"value": "no"}),
        ("DELETE", "/api/v1/domains/example.com/locality", None),
        ("DELETE", "/api/v1/domains/example.com", None),
        ("POST", "/api/v1/domains", {"name": "x.test"}),
        ("POST", "/api/v1/users", {"email": "eve@x.test"}),
    ]:
        answer = api.request(method, path, json=body)
        assert answer.status_code == 403, (method, path)
        assert "auditor" in answer.json()["error"]
    assert audit.entries(site.store) == before
    assert site.store.get_domain("example.com").properties == {"locality": "internal"}
    assert site.store.settings() == {}


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("PUT", "/api/v1/domains/example.com/colour", {"value": "blue"}, 400, "property"),
    ("PUT", "/api/v1/domains/example.com/smime", {"value": "maybe"}, 400, "value"),
    ("PUT", "/api/v1/domains/example.com/smime", {"value": 3}, 400, "value"),
    ("PUT", "/api/v1/domains/example.com/smime", {"val": "deny"}, 400, "value"),
    ("PUT", "/api/v1/domains/example.com/phone", {"value": "+31201234567"}, 400, "property"),
    ("PUT", "/api/v1/domains/a.*.example.com/smime", {"value": "deny"}, 400, "domain"),
    ("PUT", "/api/v1/domains/nowhere.test/smime", {"value": "deny"}, 404, None),
    ("GET", "/api/v1/users/nobody@example.com", None, 404, None),
    ("GET", "/api/v1/users/not-an-address", None, 400, "email"),
    ("GET", "/api/v1/users?domain=a..b", None, 400, "domain"),
    ("POST", "/api/v1/users", {"email": "x@example.com", "properties": {"phone": "12"}}, 400,
     "phone"),
    ("POST", "/api/v1/users", ["not", "an", "object"], 400, "email"),
])
def test_bad_requests_are_json_errors_and_change_nothing(
    site: Site, method: str, path: str, body: object, status: int, field: str | None
) -> None:
    answer = site.api(site.admin_token).request(method, path, json=body)
    assert answer.status_code == status
    assert answer.json()["error"]
    if field is not None:
        assert answer.json()["field"] == field
    assert site.store.get_domain("example.com").properties == {"locality": "internal"}
    assert [u.email for u in site.store.list_users()] == ["bob@example.com"]


def test_a_body_that_is_not_json(site: Site) -> None:
    answer = site.api(site.admin_token).put("/api/v1/domains/example.com/sign",
                                            content=b"{nope", headers={"content-type":
                                                                       "application/json"})
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]


def test_certificates_as_cert_list_json(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    ca = TestCA()
    site.store.add_root(ca.cert)
    site.store.add_certificate(ca.issue("dave@example.com").cert)
    listed = site.api(site.auditor_token).get("/api/v1/certificates").json()
    assert listed == cli_json(site, capsys, "cert", "list", "--json")
    assert len(listed) == 2
    only = site.api(site.admin_token).get("/api/v1/certificates?email=DAVE@example.com").json()
    assert [c["emails"] for c in only] == [["dave@example.com"]]


def test_openapi_documents_every_api_route(site: Site) -> None:
    doc = site.client().get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    app = build_app(site.store, site.app_config)
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/api/v1/") and path != "/api/v1/openapi.json":
            for method in getattr(route, "methods", set()) - {"HEAD"}:
                assert method.lower() in doc["paths"][path], (method, path)
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_a_removed_or_demoted_account_loses_its_tokens(site: Site) -> None:
    setup = Actor("setup", "admin", "cli", "local")
    accounts.add(site.store, setup, "carol", "admin", "another long password")
    accounts.remove(site.store, setup, "alice")
    assert site.api(site.admin_token).get("/api/v1/domains").status_code == 401


def test_crls_and_queue_as_the_cli_lists_them(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["-c", str(site.config_path), "ca", "create", "--root-cn", "Web Root",
                 "--intermediate-cn", "Web CA", "--key-type", "ec-p256",
                 "--signature-algorithm", "sha256-ecdsa", "--default"]) == 0
    assert main(["-c", str(site.config_path), "crl", "create"]) == 0
    api = site.api(site.auditor_token)
    crls = api.get("/api/v1/crls").json()
    assert crls == cli_json(site, capsys, "crl", "list", "--json")
    assert crls and {"issuer", "this_update", "next_update", "number", "entries", "verified",
                     "source"} <= set(crls[0])
    site.store.enqueue("sms", b"not a job")
    queue = api.get("/api/v1/queue").json()
    assert queue == cli_json(site, capsys, "queue", "list", "--json")
    assert [(q["kind"], q["status"]) for q in queue] == [("sms", "pending")]
    assert api.get("/api/v1/queue?status=failed").json() == []
    bad = api.get("/api/v1/queue?status=stuck")
    assert bad.status_code == 400 and bad.json()["field"] == "status"


def test_queue_without_the_master_key_says_so(site: Site) -> None:
    site.store.enqueue("sms", b"sealed")
    keyless = SqlStore.open(site.app_config.store.url, None)
    try:
        client = TestClient(build_app(keyless, site.app_config))
        client.headers["authorization"] = f"Bearer {site.admin_token}"
        answer = client.get("/api/v1/queue")
        assert answer.status_code == 503 and "master key" in answer.json()["error"]
        assert client.get("/api/v1/domains").status_code == 200
    finally:
        keyless.close()


def test_unknown_routes_and_methods_answer_json_under_the_api(site: Site) -> None:
    api = site.api(site.admin_token)
    missing = api.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong = api.patch("/api/v1/domains/example.com")
    assert wrong.status_code == 405 and wrong.json()["error"]
    assert site.client().get("/nothing").headers["content-type"].startswith("text/plain")
