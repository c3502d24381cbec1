"""A temp SQLite store with a CA, an internal domain and users, external correspondents, and
helpers to feed messages to the gateway as an MTA would (tests of the gateway helper)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms as acms

from smimegate import config as cfg
from smimegate.cli.message_process import split_headers
from smimegate.milter.gateway import Gateway
from smimegate.milter.transaction import Envelope
from smimegate.smime.mime import decode_smime_body, parse_entity
from smimegate.smime.sign import sign
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key
from tests.helpers.testpki import Identity, TestCA

INTERNAL = "internal.test"
AUTHSERV = "mx.internal.test"


@dataclass
class World:
    """Everything a gateway test needs; identities by short name."""

    root: Path
    ca: TestCA
    store: SqlStore
    config: cfg.Config
    gateway: Gateway
    ids: dict[str, Identity]

    def pem(self, name: str) -> tuple[Path, Path]:
        return self.ids[name].write(self.root, name)


def make_config(root: Path, **milter: object) -> cfg.Config:
    lines = [
        "[store]",
        f'url = "sqlite:///{root / "store.db"}"',
        f'master_key_file = "{root / "master.key"}"',
        "[milter]",
        f'authserv_id = "{AUTHSERV}"',
        f'reinject_secret_file = "{root / "reinject.key"}"',
        'trusted_networks = ["127.0.0.0/8"]',
    ]
    for key, value in milter.items():
        lines.append(f"{key} = {cfg.toml_value(value)}")
    return cfg.loads("\n".join(lines) + "\n", "test")


def make_world(root: Path, **milter: object) -> World:
    """alice, bob: internal with keys; eve: internal without key; carol, frank: external
    with certificates (frank's is not in the store); dave: external without; mand: external,
    encrypt_mode mandatory, no certificate."""
    ensure_master_key(root / "master.key")
    store = SqlStore.open(f"sqlite:///{root / 'store.db'}", root / "master.key",
                          check_schema=False, create=True)
    store.migrate()
    ca = TestCA()
    store.add_root(ca.cert)
    store.add_domain(INTERNAL, {"locality": "internal"})
    ids = {name: ca.issue(f"{name}@{dom}") for name, dom in (
        ("alice", INTERNAL), ("bob", INTERNAL), ("carol", "external.test"),
        ("frank", "external.test"))}
    for name in ("alice", "bob"):
        store.add_user(ids[name].email)
        store.add_certificate(ids[name].cert, key=ids[name].key)
    store.add_user(f"eve@{INTERNAL}")
    store.add_certificate(ids["carol"].cert)
    store.add_user("mand@external.test", {"encrypt_mode": "mandatory"})
    config = make_config(root, **milter)
    return World(root, ca, store, config, Gateway.create(config, store), ids)


def global_settings(world: World) -> Iterator[Callable[..., None]]:
    """The body of a fixture: a function that sets global properties for one test (the
    gateway reloaded); they are removed afterwards."""
    names: list[str] = []

    def set_(**values: str) -> None:
        for name, value in values.items():
            world.store.set_setting(name, value)
            names.append(name)
        world.gateway.reload()

    yield set_
    for name in dict.fromkeys(names):
        world.store.delete_setting(name)
    world.gateway.reload()


def envelope(sender: str, *recipients: str, client: str = "127.0.0.1",
             auth: str | None = None, queue_id: str = "4Xk2q1GZ") -> Envelope:
    return Envelope(queue_id=queue_id, sender=sender, recipients=tuple(recipients),
                    client_addr=client, client_name="client.test", helo="client.test",
                    auth_authen=auth, daemon_name="smtpd")


def parse(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """(headers as Postfix passes them to a milter, body with CRLF): what `message process`
    does with a file (smimegate.cli.message_process.split_headers)."""
    return split_headers(raw)


def plain(sender: str, to: str, subject: str = "hello", text: str = "Hello there.\r\n") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <1@client.test>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n{text}").encode()


def openssl(*args: str, data: bytes = b"") -> bytes:
    """Run openssl; fail loudly with its stderr."""
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def signed_carrying(ident: Identity, text: bytes, certificates: Sequence[bytes] = (),
                    crls: Sequence[bytes] = ()) -> bytes:
    """The DER of a ContentInfo(SignedData) of ``text`` signed by ``ident`` (opaque), with
    more certificates and CRLs (DER) in its sets: outside what is signed (RFC 5652 5.1), as a
    sender's client may add any. mime.build_pkcs7_mime(der, "signed-data") makes it a part."""
    entity = sign(text, ident.key, ident.cert, detached=False)
    info = acms.ContentInfo.load(decode_smime_body(parse_entity(entity)))
    if certificates:
        info["content"]["certificates"] = acms.CertificateSet(
            [*info["content"]["certificates"],
             *(acms.CertificateChoices.load(c) for c in certificates)])
    if crls:
        info["content"]["crls"] = acms.RevocationInfoChoices(
            [acms.RevocationInfoChoice.load(c) for c in crls])
    return bytes(info.dump(force=True))
