"""``smimegate admin``: accounts with Argon2id passwords and hashed API tokens, on SQLite and
PostgreSQL, through the real CLI; CLI changes land in the audit log."""

from __future__ import annotations

import hashlib
from pathlib import Path

from smimegate.service import accounts, audit
from smimegate.store.accounts import accounts_of
from tests.unit.cli.admin_support import Cli, cli  # noqa: F401


def test_add_list_password_remove(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    secret = tmp_path / "pw"
    secret.write_text("correct horse battery\n", encoding="utf-8")
    added = cli.ok("admin", "add", "Alice", "--role", "admin", "--password-file", secret)
    assert added.out == "admin alice added (role admin)\n"
    made = cli.ok("admin", "add", "otto", "--role", "auditor")
    password = made.out.split("password: ")[1].split()[0]
    assert len(password) == 20
    assert cli("admin", "add", "alice", "--role", "admin").code == 1  # exists
    listed = cli.ok("admin", "list", "--json").json()
    assert [(a["name"], a["role"], a["tokens"]) for a in listed] == [
        ("alice", "admin", 0), ("otto", "auditor", 0)]
    assert "hash" not in str(listed)
    store = cli.store()
    try:
        stored = accounts_of(store).get_admin("alice").password_hash
        assert stored is not None and stored.startswith("$argon2id$")
        assert "correct horse" not in stored
        assert accounts.check_credentials(store, "alice", "correct horse battery") is not None
        assert accounts.check_credentials(store, "ALICE", "correct horse battery") is not None
        assert accounts.check_credentials(store, "alice", "correct horse batterY") is None
        assert accounts.check_credentials(store, "otto", password) is not None
        assert accounts.check_credentials(store, "nobody", password) is None
        changed = cli.ok("admin", "password", "otto")
        new = changed.out.split("password: ")[1].split()[0]
        assert accounts.check_credentials(store, "otto", password) is None
        assert accounts.check_credentials(store, "otto", new) is not None
        cli.ok("admin", "remove", "otto")
        assert [a["name"] for a in cli.ok("admin", "list", "--json").json()] == ["alice"]
        assert cli("admin", "remove", "otto").code == 1
        last = cli("admin", "remove", "alice")  # nobody could change anything afterwards
        assert last.code == 2 and "last account with the admin role" in last.err
        trail = [(e.action, e.target, e.via, e.address) for e in audit.entries(store)]
        assert trail[:3] == [("admin.remove", "otto", "cli", "local"),
                             ("admin.password", "otto", "cli", "local"),
                             ("admin.add", "otto", "cli", "local")]
    finally:
        store.close()


def test_bad_input_is_a_usage_error_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    short = tmp_path / "short"
    short.write_text("tooshort\n", encoding="utf-8")
    for argv, words in [
        (("admin", "add", "alice", "--role", "root"), "allowed roles are admin, auditor"),
        (("admin", "add", "bad name", "--role", "admin"), "bad admin name"),
        (("admin", "add", "alice", "--role", "admin", "--password-file", short),
         "12 to 128 characters"),
        (("admin", "add", "alice", "--role", "admin", "--password-file", tmp_path / "none"),
         "--password-file"),
    ]:
        result = cli(*argv)
        assert result.code == 2, argv
        assert words in result.err and len(result.err.strip().splitlines()) == 1
    assert cli.ok("admin", "list", "--json").json() == []


def test_tokens_are_shown_once_and_stored_hashed(cli: Cli) -> None:  # noqa: F811
    cli.ok("admin", "add", "alice", "--role", "admin")
    cli.ok("admin", "add", "otto", "--role", "auditor")
    token = cli.ok("admin", "token", "alice").out.strip()
    read_only = cli.ok("admin", "token", "alice", "--role", "auditor").out.strip()
    assert token.startswith("sgw_") and len(token) > 40 and token != read_only
    refused = cli("admin", "token", "otto", "--role", "admin")
    assert refused.code == 2 and "only be auditor tokens" in refused.err
    assert cli("admin", "token", "nobody").code == 1
    store = cli.store()
    try:
        kept = accounts_of(store).tokens("alice")
        assert {t.digest for t in kept} == {hashlib.sha256(t.encode()).hexdigest()
                                            for t in (token, read_only)}
        actor = accounts.token_actor(store, token, "192.0.2.1")
        assert actor is not None and (actor.name, actor.role, actor.via) == ("alice", "admin",
                                                                             "api")
        reader = accounts.token_actor(store, read_only, "192.0.2.1")
        assert reader is not None and reader.role == "auditor"
        assert accounts.token_actor(store, token[:-1] + "x", "192.0.2.1") is None
        assert accounts.token_actor(store, "Bearer", "192.0.2.1") is None
        assert accounts_of(store).tokens("alice")[0].last_used is not None
    finally:
        store.close()
    assert [a["tokens"] for a in cli.ok("admin", "list", "--json").json()] == [2, 0]
    revoked = cli.ok("admin", "token", "alice", "--revoke")
    assert revoked.out == "admin alice: 2 API token(s) revoked\n"
    assert [a["tokens"] for a in cli.ok("admin", "list", "--json").json()] == [0, 0]
    assert cli("admin", "token", "alice", "--revoke", "--role", "admin").code == 2
    store = cli.store()
    try:
        assert accounts.token_actor(store, token, "192.0.2.1") is None
        assert accounts.token_actor(store, read_only, "192.0.2.1") is None
        (row,) = audit.entries(store, search="token-revoke")
        assert (row.target, row.detail, row.via) == ("alice", "2 revoked", "cli")
    finally:
        store.close()


def test_totp_enrol_prints_the_uri_once_and_disable(cli: Cli) -> None:  # noqa: F811
    import time
    import urllib.parse

    from smimegate.service import totp

    cli.ok("admin", "add", "alice", "--role", "admin")
    enrolled = cli.ok("admin", "totp", "alice")
    uri, hint = enrolled.out.splitlines()
    assert uri.startswith("otpauth://totp/smimegate%3Aalice?")
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
    assert len(secret) == 32  # 160 bits in base32
    assert "authenticator app" in hint
    assert cli.ok("admin", "list").out.rstrip().endswith("totp")
    assert cli.ok("admin", "list", "--json").json()[0]["totp"] is True
    store = cli.store()
    try:
        assert totp.check(store, "alice", totp.code_at(secret, time.time()))
        assert cli("admin", "totp", "nobody").code == 1
        assert cli.ok("admin", "totp", "alice", "--disable").out == \
            "admin alice: second factor removed\n"
        assert not totp.enrolled(store, "alice")
        assert [e.detail for e in audit.entries(store, search="totp")] == [
            "disabled", "enrolled"]
    finally:
        store.close()
