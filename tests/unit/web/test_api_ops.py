"""The REST API's queue actions, audit log and SMS test on SQLite and PostgreSQL: success,
an auditor's 403, bad input as 400 naming the field, an unknown item as 404, the audit rows;
and /metrics in the OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from smimegate import config as cfg
from smimegate.cli.main import main
from smimegate.service import audit
from smimegate.web.app import build_app
from tests.unit.web.conftest import Site


def _client(site: Site, tmp_path: Path, token: str) -> TestClient:
    """The site with mail and SMS going nowhere: SMS to a file, mail to a closed port."""
    text = site.config_path.read_text(encoding="utf-8") + (
        f'[sms]\ntransport = "file"\nfile = "{tmp_path / "sms.txt"}"\n'
        '[smtp]\nrelay = "127.0.0.1:9"\ntimeout = 2\n')
    client = TestClient(build_app(site.store, cfg.loads(text)))
    client.headers["authorization"] = f"Bearer {token}"
    return client


def test_queue_retry_and_delete(site: Site, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    first = site.store.enqueue("sms", b"not a job")
    second = site.store.enqueue("sms", b"not a job either")
    api = _client(site, tmp_path, site.admin_token)
    listed = api.get("/api/v1/queue?sort=id&order=desc")
    assert [q["id"] for q in listed.json()] == [second, first]
    assert listed.headers["x-total-count"] == "2"
    capsys.readouterr()
    assert main(["-c", str(site.config_path), "queue", "list", "--json"]) == 0
    assert api.get("/api/v1/queue").json() == json.loads(capsys.readouterr().out)
    retried = api.post(f"/api/v1/queue/{first}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["id"] == first and retried.json()["sent"] is False
    assert retried.json()["error"]
    assert api.delete(f"/api/v1/queue/{second}").status_code == 204
    assert api.delete(f"/api/v1/queue/{second}").status_code == 404
    assert api.post(f"/api/v1/queue/{second}/retry").status_code == 404
    for answer in (api.delete("/api/v1/queue/abc"), api.post("/api/v1/queue/0/retry")):
        assert answer.status_code == 400 and answer.json()["field"] == "id"
    assert api.get("/api/v1/queue?kind=fax").json()["field"] == "kind"
    trail = [(e.action, e.target, e.via) for e in audit.entries(site.store, search="queue.")]
    assert trail == [("queue.delete", str(second), "api"), ("queue.retry", str(first), "api")]
    auditor = _client(site, tmp_path, site.auditor_token)
    assert auditor.post(f"/api/v1/queue/{first}/retry").status_code == 403
    assert auditor.delete(f"/api/v1/queue/{first}").status_code == 403
    assert [q["id"] for q in auditor.get("/api/v1/queue").json()] == [first]


def test_audit_log_pages(site: Site) -> None:
    api = site.api(site.auditor_token)
    everything = api.get("/api/v1/audit")
    total = int(everything.headers["x-total-count"])
    assert total == len(everything.json()) >= 5  # conftest: 2 accounts, domain, user, tokens
    assert everything.json()[0]["action"] == "admin.token"  # newest first
    page = api.get("/api/v1/audit", params={"q": "ADMIN.", "limit": 1, "offset": 1})
    assert page.headers["x-total-count"] == "4" and len(page.json()) == 1
    assert page.json()[0]["action"].startswith("admin.")
    assert set(page.json()[0]) == {"id", "at", "actor", "role", "via", "address", "action",
                                   "target", "detail"}
    for query, field in (("limit=0", "limit"), ("limit=x", "limit"), ("offset=-3", "offset"),
                         ("q=" + "x" * 201, "q")):
        answer = api.get(f"/api/v1/audit?{query}")
        assert answer.status_code == 400 and answer.json()["field"] == field


def test_sms_settings_and_test_message(site: Site, tmp_path: Path) -> None:
    api = _client(site, tmp_path, site.admin_token)
    assert api.get("/api/v1/sms").json()["Transport"] == "file"
    sent = api.post("/api/v1/sms/test", json={"phone": "+31 20 123 4567"})
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"phone": "+31201234567", "sent": True}
    assert "+31201234567" in (tmp_path / "sms.txt").read_text(encoding="utf-8")
    for body, field in (({"phone": "12"}, "phone"), ({}, "phone"), ({"phone": 31}, "phone"),
                        ({"phone": "+31201234567", "text": "hi"}, "text")):
        answer = api.post("/api/v1/sms/test", json=body)
        assert answer.status_code == 400 and answer.json()["field"] == field, body
    (row,) = audit.entries(site.store, search="sms.test")
    assert (row.via, row.target, row.detail) == ("api", "+31201234567", "sent")
    refused = _client(site, tmp_path, site.auditor_token).post(
        "/api/v1/sms/test", json={"phone": "+31201234567"})
    assert refused.status_code == 403
    assert len(audit.entries(site.store, search="sms.test")) == 1


def test_metrics_is_in_the_document(site: Site) -> None:
    doc = site.client().get("/api/v1/openapi.json").json()
    answer = doc["paths"]["/metrics"]["get"]["responses"]["200"]
    assert "text/plain; version=0.0.4" in answer["content"]
    assert doc["security"] == [{"bearer": []}]
    scraped = site.api(site.auditor_token).get("/metrics")
    assert scraped.status_code == 200 and "smimegate_up" in scraped.text
