"""OCSP inside trust decisions (issue 10, item 3): trust.check with an OCSP lookup, and
`message inspect` with [crl] ocsp, against `openssl ocsp` on loopback (tests.unit.pki.ocsp_support).

The responder is asked only for a link that no current CRL answers for; what it says is
decided by [crl] revocation_mode: revoked is never trusted, unavailable is trusted under
soft-fail (revocation "unknown") and not under hard-fail or require.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from smimegate.cli.main import main
from smimegate.pki import trust
from smimegate.pki.ocsp import OcspClient
from smimegate.smime.sign import sign
from smimegate.store import SqlStore
from tests.helpers.ports import free_port
from tests.unit.pki import pkibuild
from tests.unit.pki.ocsp_support import NOW, OcspServer, index_line, leaf, openssl_responder, serve
from tests.unit.pki.pkibuild import Issued

UTC = dt.UTC
P = "X-Smimegate-Info-"
TEXT = b"Content-Type: text/plain\r\n\r\nhello\r\n"


@pytest.fixture
def server() -> Iterator[OcspServer]:
    yield from serve()


@pytest.fixture(scope="module")
def root() -> Issued:
    # The root issues the end entities itself: the one link below it is the one OCSP answers.
    return pkibuild.root("OCSP Trust Root", not_before=NOW - dt.timedelta(days=10))


def _revoked(tmp_path: Path, server: OcspServer, root: Issued, alice: Issued) -> None:
    when = dt.datetime.now(UTC) - dt.timedelta(hours=1)
    server.respond = openssl_responder(
        tmp_path / "responder", root, root, [index_line(alice.cert, (when, "keyCompromise"))],
        "-ndays", "1")


def _anchors(root: Issued, mode: trust.RevocationMode = "soft-fail", *, ocsp: bool = True,
             crls: tuple[object, ...] = ()) -> trust.TrustAnchors:
    lookup = OcspClient(timeout=5.0).check if ocsp else None
    return trust.TrustAnchors(roots=(root.cert,), crls=crls,  # type: ignore[arg-type]
                              revocation_mode=mode, ocsp=lookup)


# --- trust.check ------------------------------------------------------------------------------


def test_revoked_only_by_ocsp_is_not_trusted(server: OcspServer, root: Issued,
                                             tmp_path: Path) -> None:
    alice = leaf(root, server.url)
    _revoked(tmp_path, server, root, alice)
    result = trust.check(alice.cert, _anchors(root), purpose="sign")
    assert not result.trusted
    assert result.revocation == "revoked"
    assert result.reason is not None and result.reason.startswith("revoked (keyCompromise) ")
    # Without the lookup nothing says so: soft-fail trusts it with the status unknown.
    without = trust.check(alice.cert, _anchors(root, ocsp=False), purpose="sign")
    assert without.trusted and without.revocation == "unknown"


def test_good_by_ocsp_satisfies_require(server: OcspServer, root: Issued,
                                        tmp_path: Path) -> None:
    alice = leaf(root, server.url)
    server.respond = openssl_responder(tmp_path, root, root, [index_line(alice.cert)],
                                       "-ndays", "1")
    result = trust.check(alice.cert, _anchors(root, "require"), purpose="sign")
    assert result.trusted, result.reason
    assert result.revocation == "good"


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail", "require"])
def test_responder_down_by_revocation_mode(root: Issued, mode: trust.RevocationMode) -> None:
    url = f"http://127.0.0.1:{free_port()}/ocsp"
    alice = leaf(root, url)
    result = trust.check(alice.cert, _anchors(root, mode), purpose="sign")
    assert result.revocation == "unknown"
    if mode == "soft-fail":
        assert result.trusted and result.reason is None
    else:
        assert not result.trusted
        assert result.reason is not None
        assert result.reason.startswith("revocation status unknown: ")
        assert f"OCSP: {url}: cannot connect" in result.reason


def test_unknown_answer_under_hard_fail(server: OcspServer, root: Issued, tmp_path: Path) -> None:
    alice = leaf(root, server.url)
    server.respond = openssl_responder(tmp_path, root, root, [], "-ndays", "1")
    result = trust.check(alice.cert, _anchors(root, "hard-fail"), purpose="sign")
    assert not result.trusted
    assert result.reason is not None
    assert result.reason.endswith("OCSP: the responder does not know the certificate")


def test_current_crl_answers_before_ocsp(server: OcspServer, root: Issued,
                                         tmp_path: Path) -> None:
    alice = leaf(root, server.url)
    _revoked(tmp_path, server, root, alice)
    now = dt.datetime.now(UTC)
    crl = pkibuild.crl(root, last_update=now - dt.timedelta(hours=1),
                       next_update=now + dt.timedelta(days=1))
    result = trust.check(alice.cert, _anchors(root, "require", crls=(crl,)), purpose="sign")
    # The CRL is current and does not list alice: the responder is not asked at all.
    assert result.trusted and result.revocation == "good"
    assert server.requests == 0


# --- message inspect --------------------------------------------------------------------------


def _config(tmp_path: Path, root: Issued, crl: str = "") -> Path:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SqlStore.open(url, None, create=True, check_schema=False)
    store.migrate()
    store.add_root(root.cert)
    store.close()
    path = tmp_path / "smimegate.toml"
    path.write_text(f'[store]\nurl = "{url}"\nmaster_key_file = "{tmp_path / "master.key"}"\n'
                    f"[crl]\n{crl}")
    return path


def _inspect(capsys: pytest.CaptureFixture[str], config: Path, message: Path) -> dict[str, str]:
    capsys.readouterr()
    code = main(["-c", str(config), "message", "inspect", str(message)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return dict(line.split(": ", 1) for line in out.splitlines())


def test_message_inspect_reports_ocsp_revocation(server: OcspServer, root: Issued,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    alice = leaf(root, server.url)
    _revoked(tmp_path, server, root, alice)
    message = tmp_path / "signed.eml"
    message.write_bytes(b"Subject: t\r\n" + sign(TEXT, alice.key, alice.cert))

    headers = _inspect(capsys, _config(tmp_path, root), message)
    assert headers[f"{P}Signer-Verified-0-0"] == "True"
    assert headers[f"{P}Signer-Trusted-0-0"] == "False"
    assert headers[f"{P}Signer-Trusted-Info-0-0"].startswith("revoked (keyCompromise) ")
    assert server.requests == 1

    off = tmp_path / "off"
    off.mkdir()
    headers = _inspect(capsys, _config(off, root, "ocsp = false\n"), message)
    assert headers[f"{P}Signer-Trusted-0-0"] == "True"
    assert server.requests == 1


def test_message_inspect_hard_fail_when_responder_down(
        root: Issued, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/ocsp"
    alice = leaf(root, url)
    message = tmp_path / "signed.eml"
    message.write_bytes(b"Subject: t\r\n" + sign(TEXT, alice.key, alice.cert))
    headers = _inspect(capsys, _config(tmp_path, root, 'revocation_mode = "hard-fail"\n'),
                       message)
    assert headers[f"{P}Signer-Trusted-0-0"] == "False"
    info = headers[f"{P}Signer-Trusted-Info-0-0"]
    assert info.startswith("revocation status unknown: ") and f"OCSP: {url}: " in info
