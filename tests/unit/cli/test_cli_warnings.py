"""The command line shows library warnings as one line each, never a traceback; --debug shows
everything (issue 9, point 2)."""

from __future__ import annotations

import datetime as dt
import io
import logging
import subprocess
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning

from smimegate.cli import clilog
from smimegate.smime.sign import sign
from smimegate.store import SqlStore
from tests.helpers.testpki import TestCA
from tests.unit.cli.admin_support import SMIMEGATE

NOW = dt.datetime.now(dt.UTC)


def _intermediate(root: TestCA, start: dt.datetime, days: int, serial: int) -> TestCA:
    """A CA "Intermediate I" under root, valid from start for days."""
    ca = TestCA("Intermediate I")
    ca.cert = (
        x509.CertificateBuilder()
        .subject_name(ca.cert.subject)
        .issuer_name(root.cert.subject)
        .public_key(ca.key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
                       critical=False)
        .sign(root.key, hashes.SHA256())
    )
    return ca


def _crl(issuer: TestCA) -> x509.CertificateRevocationList:
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(NOW + dt.timedelta(days=1))
        .sign(issuer.key, hashes.SHA256())
    )


@pytest.fixture
def bad_crl_store(tmp_path: Path) -> tuple[Path, Path]:
    """A store whose intermediate CA rolled its key over: the CRL it holds for the
    intermediate's name is signed by the old, expired certificate, so pyhanko-certvalidator
    cannot validate the CRL issuer and logs a warning with a chain of exceptions. Returns the
    configuration and a message signed by a user of the current intermediate."""
    config = tmp_path / "smimegate.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n'
                      f'master_key_file = "{tmp_path}/master.key"\n')
    assert subprocess.run([str(SMIMEGATE), "-c", str(config), "db", "init"],
                          capture_output=True, timeout=60).returncode == 0
    root = TestCA("Root R")
    current = _intermediate(root, NOW - dt.timedelta(days=1), 900, 2)
    expired = _intermediate(root, NOW - dt.timedelta(days=900), 365, 1)
    alice = current.issue("alice@example.com")
    store = SqlStore.open(f"sqlite:///{tmp_path}/s.db", tmp_path / "master.key")
    try:
        store.add_root(root.cert)
        store.add_certificate(current.cert, source="import")
        store.add_certificate(expired.cert, source="import")
        store.add_crl(_crl(root), source="import")
        store.add_crl(_crl(expired), source="import")
    finally:
        store.close()
    message = tmp_path / "signed.eml"
    message.write_bytes(b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: hi\r\n"
                        + sign(b"Content-Type: text/plain\r\n\r\nhello\r\n", alice.key,
                               alice.cert, [current.cert]))
    return config, message


def _inspect(config: Path, message: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SMIMEGATE), *extra, "-c", str(config), "message", "inspect",
                           str(message)], capture_output=True, text=True, timeout=120)


def test_library_warning_about_a_bad_crl_is_one_line(bad_crl_store: tuple[Path, Path]) -> None:
    done = _inspect(*bad_crl_store)
    assert done.returncode == 0, done.stderr
    assert "X-Smimegate-Info-Signer-Verified-0-0: True" in done.stdout
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines, "the unusable CRL is worth one warning"
    assert all(line.startswith("smimegate: warning: ") for line in lines), done.stderr
    assert len(lines) == len(set(lines))  # said once, however often the library meets it
    assert any("CRL issuer" in line for line in lines)


def test_debug_shows_the_library_traceback(bad_crl_store: tuple[Path, Path]) -> None:
    done = _inspect(*bad_crl_store, "--debug")
    assert done.returncode == 0
    assert "Traceback" in done.stderr and "ExpiredError" in done.stderr
    assert "pyhanko_certvalidator" in done.stderr  # logger names with --debug


@pytest.fixture
def quiet_cli() -> io.StringIO:
    """clilog without --debug on a stream of its own; the root logger as it was after."""
    root = logging.getLogger()
    level = root.level
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        clilog.setup(debug=False, stream=out)
        yield out
    for handler in [h for h in root.handlers if h.get_name() == clilog.HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_python_warnings_are_one_line_and_deprecations_hidden(quiet_cli: io.StringIO) -> None:
    warnings.warn("TripleDES has moved", CryptographyDeprecationWarning, stacklevel=1)
    warnings.warn("old API", DeprecationWarning, stacklevel=1)
    warnings.warn("server certificate not checked\nsecond line", UserWarning, stacklevel=1)
    assert quiet_cli.getvalue() == "smimegate: warning: server certificate not checked\n"


def test_records_lose_their_traceback_and_our_lines_stay_as_they_are(
    quiet_cli: io.StringIO,
) -> None:
    try:
        raise ValueError("inner")
    except ValueError:
        logging.getLogger("ldap3.test").warning("cannot bind", exc_info=True)
    logging.getLogger("smimegate.test").warning("smimegate: warning: directory not asked")
    logging.getLogger("somelib").info("chatter")
    logging.getLogger("somelib").error("broken")
    assert quiet_cli.getvalue().splitlines() == [
        "smimegate: warning: cannot bind",
        "smimegate: warning: directory not asked",
        "smimegate: error: broken",
    ]


def test_debug_shows_everything() -> None:
    root = logging.getLogger()
    level = root.level
    out = io.StringIO()
    try:
        with warnings.catch_warnings():
            clilog.setup(debug=True, stream=out)
            logging.getLogger("somelib").debug("chatter")
            try:
                raise ValueError("inner")
            except ValueError:
                logging.getLogger("somelib").warning("cannot bind", exc_info=True)
    finally:
        for handler in [h for h in root.handlers if h.get_name() == clilog.HANDLER_NAME]:
            root.removeHandler(handler)
        root.setLevel(level)
    text = out.getvalue()
    assert "somelib: DEBUG: chatter" in text
    assert "Traceback" in text and "ValueError: inner" in text
