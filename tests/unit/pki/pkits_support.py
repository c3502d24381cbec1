"""NIST PKITS (Public Key Interoperability Test Suite, 2011 data) as our store would hold it.

Data: the PyPI package ``cryptography-vectors`` (a test extra in setup.cfg), folder
``cryptography_vectors/x509/PKITS_data/``: NIST's certs/, crls/ and smime/ (one signed S/MIME
message per path test, 224 of them, each carrying the end-entity certificate and the
intermediates of its path). Expected results: tests/vectors/pkits/expected.tsv (origin in
tests/vectors/README.md).

The store is filled as a running gateway is: the trust anchor added with `smimegate root add`,
every PKITS CRL with `smimegate crl import` (the real CLI, in-process, one file at a time, as
an administrator would before any mail has arrived), then every message opened and its
signers' certificates and CA certificates harvested by Services.import_signers (what the milter
does with inbound mail). Nothing is chosen per test: each
test is decided against the whole store, with the message's own certificates as the extra
certificates the milter passes, as happens when the 224 messages arrive at one gateway.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

import cryptography_vectors

from smimegate.cli.main import main as smimegate
from smimegate.milter.inbound import open_entity
from smimegate.milter.services import Services
from smimegate.smime.results import Layer
from smimegate.store import SqlStore
from smimegate.store.keys import ensure_master_key

DATA = Path(cryptography_vectors.__file__).parent / "x509" / "PKITS_data"
EXPECTED = Path(__file__).resolve().parents[2] / "vectors" / "pkits" / "expected.tsv"
ANCHOR = DATA / "certs" / "TrustAnchorRootCertificate.crt"
# Every PKITS certificate is valid 2010-01-01 .. 2030-12-31 and every current CRL has that
# nextUpdate; a fixed moment inside keeps the outcome independent of the day the tests run.
AT = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Case:
    """One PKITS path test: its section in NIST's description, title and expected outcome."""

    section: str
    title: str
    valid: bool

    @property
    def message(self) -> Path:
        # NIST's naming: "Signed" + the title without blanks and hyphens.
        return DATA / "smime" / ("Signed" + self.title.replace(" ", "").replace("-", "")
                                 + ".eml")


def cases() -> list[Case]:
    out = []
    for line in EXPECTED.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        section, title, expected = line.split("\t")
        assert expected in ("valid", "invalid"), line
        out.append(Case(section, title, expected == "valid"))
    return out


def read_message(case: Case) -> bytes:
    """The message with CRLF line ends, as it travels over SMTP (the files have LF)."""
    return case.message.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def signed_layer(case: Case) -> Layer:
    """The message's one signed layer, signature verified, trust not yet decided."""
    opened = open_entity(read_message(case), ())
    assert len(opened.layers) == 1 and opened.layers[0].kind == "signed", case
    return opened.layers[0]


@dataclass
class PkitsStore:
    store: SqlStore
    config: Path  # the smimegate.toml naming the store
    layers: dict[str, Layer]  # by section
    refused_crls: dict[str, str] = field(default_factory=dict)  # file name -> what it said


def run_cli(config: Path, *argv: str | Path) -> tuple[int, str]:
    """``smimegate -c CONFIG ARGV...`` in-process: (exit code, stdout + stderr)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = smimegate(["-c", str(config), *map(str, argv)])
    return code, out.getvalue()


def open_store(directory: Path) -> tuple[SqlStore, Path]:
    """A new SQLite store in ``directory`` and a configuration file naming it."""
    key = directory / "master.key"
    ensure_master_key(key)
    url = f"sqlite:///{directory / 'store.db'}"
    config = directory / "smimegate.toml"
    config.write_text(f'[store]\nurl = "{url}"\nmaster_key_file = "{key}"\n', encoding="utf-8")
    code, said = run_cli(config, "db", "init")
    assert code == 0, said
    return SqlStore.open(url, key), config


def fill(store: SqlStore, config: Path) -> PkitsStore:
    """Root, every CRL and the harvested certificates (see the module docstring)."""
    code, said = run_cli(config, "root", "add", ANCHOR)
    assert code == 0, said
    filled = PkitsStore(store, config, {})
    for path in sorted((DATA / "crls").glob("*.crl")):
        code, said = run_cli(config, "crl", "import", path)
        if code != 0:
            filled.refused_crls[path.name] = said.strip()
    services = Services(store)
    for case in cases():
        layer = signed_layer(case)
        filled.layers[case.section] = layer
        services.import_signers([layer])
    return filled
