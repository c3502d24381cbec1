"""The gateway over a real slapd (tests/fixtures/slapd.py): policy attributes from the directory
drive the decision at RCPT and at end of message, a certificate found only in the directory is
used to encrypt, and a directory that is down tempfails (451 4.7.1) unless on_unavailable is
"soft"."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ldap3
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate import config as cfg
from smimegate.milter import replies
from smimegate.milter.edit import apply_outcome_to_message
from smimegate.milter.gateway import Gateway
from smimegate.milter.transaction import Outcome
from smimegate.store.base import StoreError
from tests.fixtures.slapd import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
)
from tests.milter.gateway_support import (
    AUTHSERV,
    World,
    envelope,
    make_world,
    openssl,
    parse,
    plain,
)

EVE = "eve@internal.test"  # internal, no signing key: outbound mail is only encrypted
_counter = itertools.count()


@dataclass
class Directory:
    """One test's subtree of a slapd and an admin connection to fill it."""

    slapd: Slapd
    base: str
    admin: ldap3.Connection

    def add(self, uid: str, mail: str, **attrs: object) -> str:
        dn = f"uid={uid},{self.base}"
        ok = self.admin.add(dn, ["inetOrgPerson", "smimegateUser"],
                            {"cn": uid, "sn": uid, "uid": uid, "mail": mail, **attrs})
        assert ok, self.admin.result
        return dn

    def modify(self, dn: str, attribute: str, value: str) -> None:
        ok = self.admin.modify(dn, {attribute: [(ldap3.MODIFY_REPLACE, [value])]})
        assert ok, self.admin.result


def _directory(server: Slapd) -> Iterator[Directory]:
    admin = ldap3.Connection(ldap3.Server(server.url, get_info=ldap3.NONE), ADMIN_DN,
                             ADMIN_PASSWORD, auto_bind=True)
    base = f"ou=gw{os.getpid()}x{next(_counter)},{PEOPLE}"
    assert admin.add(base, ["organizationalUnit"]), admin.result
    try:
        yield Directory(server, base, admin)
    finally:
        admin.unbind()


@pytest.fixture
def directory(slapd: Slapd) -> Iterator[Directory]:
    yield from _directory(slapd)


@pytest.fixture
def private_directory(private_slapd: Slapd) -> Iterator[Directory]:
    yield from _directory(private_slapd)


def ldap_config(root: Path, directory: Directory, *extra: str) -> cfg.Config:
    secret = root / "ldap.secret"
    secret.write_text(SERVICE_PASSWORD + "\n")
    secret.chmod(0o600)
    text = "\n".join([
        "[store]",
        f'url = "sqlite:///{root / "store.db"}"',
        f'master_key_file = "{root / "master.key"}"',
        "[milter]",
        f'authserv_id = "{AUTHSERV}"',
        f'reinject_secret_file = "{root / "reinject.key"}"',
        'trusted_networks = ["127.0.0.0/8"]',
        "[ldap]",
        f'urls = ["{directory.slapd.url}"]',
        f'bind_dn = "{SERVICE_DN}"',
        f'password_file = "{secret}"',
        f'base_dn = "{directory.base}"',
        "timeout = 3",
        *extra,
        "[ldap.attributes]",
        'encrypt_mode = "smimegateEncryptMode"',
        'encryption_algorithm = "smimegateEncryptionAlgorithm"',
    ]) + "\n"
    return cfg.loads(text, "test.toml")


def ldap_world(root: Path, directory: Directory, *extra: str) -> World:
    world = make_world(root)
    world.config = ldap_config(root, directory, *extra)
    world.gateway = Gateway.create(world.config, world.store)
    return world


def send(world: World, sender: str, *rcpts: str) -> tuple[Outcome, bytes]:
    headers, body = parse(plain(sender, ", ".join(rcpts)))
    outcome = world.gateway.process(envelope(sender, *rcpts), headers, body)
    return outcome, apply_outcome_to_message(headers, body, outcome)


def test_gateway_uses_the_directory_only_when_configured(tmp_path: Path,
                                                         directory: Directory) -> None:
    for sub in ("plain", "ldap"):
        (tmp_path / sub).mkdir()
    plain_world = make_world(tmp_path / "plain")
    assert plain_world.gateway.directory is None
    world = ldap_world(tmp_path / "ldap", directory)
    assert world.gateway.directory is not None
    assert world.gateway.services.directory is world.gateway.directory


def test_mandatory_from_directory_refused_at_rcpt_and_at_eom(tmp_path: Path,
                                                             directory: Directory) -> None:
    directory.add("lmand", "lmand@external.test", smimegateEncryptMode="mandatory")
    world = ldap_world(tmp_path, directory)
    policy = world.gateway.services.policies(["lmand@external.test"])["lmand@external.test"]
    assert (policy.value("encrypt_mode"), policy.source("encrypt_mode")) == ("mandatory", "ldap")
    reply = world.gateway.rcpt_check(envelope(EVE), "<lmand@external.test>")
    assert reply.refuses and reply.code == "550" and reply.xcode == "5.7.1"
    assert "lmand@external.test" in (reply.text or "")
    # Someone the directory does not know is accepted as before.
    assert world.gateway.rcpt_check(envelope(EVE), "<nobody@external.test>") == replies.CONTINUE
    outcome, _message = send(world, EVE, "lmand@external.test")
    assert outcome.reply.code == "550" and "action=refuse" in outcome.log_line


def test_directory_overrides_the_store_user_row(tmp_path: Path, directory: Directory) -> None:
    # mand@external.test is mandatory in the store; the directory says none and wins.
    directory.add("mand", "mand@external.test", smimegateEncryptMode="none")
    world = ldap_world(tmp_path, directory)
    assert world.gateway.rcpt_check(envelope(EVE), "<mand@external.test>") == replies.CONTINUE
    outcome, message = send(world, EVE, "mand@external.test")
    assert outcome.reply == replies.CONTINUE and b"Hello there." in message


def test_certificate_only_in_the_directory_is_used(tmp_path: Path,
                                                   directory: Directory) -> None:
    world = make_world(tmp_path)
    lcert = world.ca.issue("lcert@external.test")
    assert world.store.find_certificates(lcert.email) == []
    directory.add("lcert", lcert.email, smimegateEncryptMode="mandatory",
                  **{"userCertificate;binary": lcert.cert.public_bytes(Encoding.DER)})
    world.config = ldap_config(tmp_path, directory)
    world.gateway = Gateway.create(world.config, world.store)
    assert world.gateway.rcpt_check(envelope(EVE), f"<{lcert.email}>") == replies.CONTINUE
    outcome, message = send(world, EVE, lcert.email)
    assert "action=encrypt" in outcome.log_line and "rcpt_certs=1" in outcome.log_line
    key, crt = lcert.write(tmp_path, "lcert")
    inner = openssl("smime", "-decrypt", "-inkey", str(key), "-recip", str(crt), data=message)
    assert b"Hello there." in inner
    # A certificate blocked in the store stays blocked when the directory offers it too.
    record = world.store.add_certificate(lcert.cert)
    world.store.set_certificate_blocked(record.fingerprint, True)
    world.gateway.reload()
    refused, _message = send(world, EVE, lcert.email)
    assert refused.reply.code == "550"


def test_reload_forgets_directory_answers(tmp_path: Path, directory: Directory) -> None:
    dn = directory.add("flip", "flip@external.test", smimegateEncryptMode="none")
    world = ldap_world(tmp_path, directory)
    assert world.gateway.rcpt_check(envelope(EVE), "<flip@external.test>") == replies.CONTINUE
    directory.modify(dn, "smimegateEncryptMode", "mandatory")
    # cache_ttl is 300 s: the old answer stands until the gateway is reloaded (SIGUSR1).
    assert world.gateway.rcpt_check(envelope(EVE), "<flip@external.test>") == replies.CONTINUE
    world.gateway.reload()
    assert world.gateway.rcpt_check(envelope(EVE), "<flip@external.test>").code == "550"


def test_directory_down_tempfails_and_soft_decides_without_it(
        tmp_path: Path, private_directory: Directory) -> None:
    directory = private_directory
    for sub in ("hard", "soft"):
        (tmp_path / sub).mkdir()
    directory.add("lmand", "lmand@external.test", smimegateEncryptMode="mandatory")
    hard = ldap_world(tmp_path / "hard", directory, "cache_ttl = 0", "negative_cache_ttl = 0")
    soft = ldap_world(tmp_path / "soft", directory, 'on_unavailable = "soft"', "cache_ttl = 0",
                      "negative_cache_ttl = 0")
    assert hard.gateway.rcpt_check(envelope(EVE), "<lmand@external.test>").code == "550"
    directory.admin.unbind()
    directory.slapd.stop()

    reply = hard.gateway.rcpt_check(envelope(EVE), "<lmand@external.test>")
    assert reply == replies.TEMPFAIL_DIRECTORY
    assert (reply.code, reply.xcode) == ("451", "4.7.1")
    outcome, _message = send(hard, EVE, "carol@external.test")
    assert outcome.reply == replies.TEMPFAIL_DIRECTORY
    assert "result=tempfail-directory" in outcome.log_line

    # soft: the store alone decides; carol's stored certificate is still used.
    assert soft.gateway.rcpt_check(envelope(EVE), "<lmand@external.test>") == replies.CONTINUE
    outcome, message = send(soft, EVE, "carol@external.test")
    assert outcome.reply == replies.CONTINUE and "action=encrypt" in outcome.log_line
    assert b"smime-type=enveloped-data" in message

    directory.slapd.start()
    assert hard.gateway.rcpt_check(envelope(EVE), "<lmand@external.test>").code == "550"
    hard.gateway.close()
    soft.gateway.close()


def test_close_closes_store_and_directory(tmp_path: Path, directory: Directory) -> None:
    directory.add("lmand", "lmand@external.test", smimegateEncryptMode="mandatory")
    world = ldap_world(tmp_path, directory)
    assert world.gateway.rcpt_check(envelope(EVE), "<lmand@external.test>").code == "550"
    closed: list[str] = []
    store_close, dir_close = world.store.close, world.gateway.directory.close  # type: ignore[union-attr]

    def close_store() -> None:
        closed.append("store")
        store_close()

    def close_directory() -> None:
        closed.append("directory")
        dir_close()

    world.store.close = close_store  # type: ignore[method-assign]
    world.gateway.directory.close = close_directory  # type: ignore[union-attr,method-assign]
    world.gateway.close()
    assert closed == ["directory", "store"]


def test_reload_with_another_ldap_section(tmp_path: Path, directory: Directory) -> None:
    directory.add("lmand", "lmand@external.test", smimegateEncryptMode="mandatory")
    world = make_world(tmp_path)
    gateway = Gateway.create(world.config, world.store)
    assert gateway.rcpt_check(envelope(EVE), "<lmand@external.test>") == replies.CONTINUE
    # SIGUSR1 with a configuration that now has [ldap]: the directory counts from then on ...
    gateway.reload(ldap_config(tmp_path, directory))
    assert gateway.directory is not None and gateway.services.directory is gateway.directory
    assert gateway.rcpt_check(envelope(EVE), "<lmand@external.test>").code == "550"
    # ... and without it again: no directory any more.
    gateway.reload(world.config)
    assert gateway.directory is None and gateway.services.directory is None
    assert gateway.rcpt_check(envelope(EVE), "<lmand@external.test>") == replies.CONTINUE


def test_unreadable_password_file_is_a_store_error(tmp_path: Path,
                                                   directory: Directory) -> None:
    # The commands and the daemon report a StoreError in one line (exit 1), not a traceback.
    world = make_world(tmp_path)
    config = ldap_config(tmp_path, directory)
    (tmp_path / "ldap.secret").unlink()
    with pytest.raises(StoreError, match="ldap.secret"):
        Gateway.create(config, world.store)
