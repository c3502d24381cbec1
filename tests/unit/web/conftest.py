"""The web admin and the REST API in-process (Starlette's TestClient) over a real store on
SQLite and on PostgreSQL, with an admin and an auditor account and a token for each."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from smimegate import config as cfg
from smimegate.service import accounts, domains, users
from smimegate.service.actor import Actor
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from smimegate.web.app import build_app

PASSWORD = "a long enough password"
SETUP = Actor("setup", "admin", "cli", "local")


@dataclass
class Site:
    store: SqlStore
    config_path: Path
    app_config: cfg.Config
    admin_token: str
    auditor_token: str

    def client(self, base_url: str = "http://testserver") -> TestClient:
        return TestClient(build_app(self.store, self.app_config), base_url=base_url,
                          follow_redirects=False)

    def api(self, token: str | None = None, base_url: str = "http://testserver") -> TestClient:
        client = self.client(base_url)
        if token is not None:
            client.headers["authorization"] = f"Bearer {token}"
        return client


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    key = tmp_path / "master.key"
    ensure_master_key(key)
    config_path = tmp_path / "smimegate.toml"
    config_path.write_text(f'[store]\nurl = "{url}"\nmaster_key_file = "{key}"\n'
                           "[web]\nlogin_failures_per_user = 3\n"
                           # TestClient sends Host: testserver.
                           'allowed_hosts = ["testserver"]\n', encoding="utf-8")
    store = SqlStore.open(url, key, check_schema=False, create=True)
    store.migrate()
    accounts.add(store, SETUP, "alice", "admin", PASSWORD)
    accounts.add(store, SETUP, "otto", "auditor", PASSWORD)
    domains.add(store, SETUP, "example.com", {"locality": "internal"})
    users.add(store, SETUP, "bob@example.com")
    yield Site(store, config_path, cfg.load(config_path),
               accounts.new_token(store, SETUP, "alice"),
               accounts.new_token(store, SETUP, "otto"))
    store.close()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


def sign_in(client: TestClient, user: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the CSRF token of the session's pages."""
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "user": user, "password": password})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard", answer.text
    return csrf_of(client.get("/dashboard").text)
