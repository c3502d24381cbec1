"""smimegate.pki.ocsp against a real `openssl ocsp` responder on loopback (issue 10, item 3).

Responses come from openssl's responder code (tests.unit.pki.ocsp_support says why its HTTP
side is ours); what openssl cannot be made to send (stale answers, a wrong nonce, a future
thisUpdate, an answer about another certificate) comes from cryptography's response builder.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import ocsp as aocsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as xocsp

from smimegate.pki.ocsp import OcspCache, OcspClient, OcspResult, responder_url
from tests.helpers.ports import free_port
from tests.helpers.x509damage import with_an_extension_twice
from tests.unit.pki import pkibuild
from tests.unit.pki.ocsp_support import (
    NOW,
    OcspServer,
    Responder,
    built_responder,
    index_line,
    leaf,
    openssl_responder,
    responder_cert,
    serve,
)
from tests.unit.pki.pkibuild import Issued

UTC = dt.UTC


@pytest.fixture
def server() -> Iterator[OcspServer]:
    yield from serve()


@pytest.fixture(scope="module")
def ca() -> Issued:
    root = pkibuild.root("OCSP Test Root", not_before=NOW - dt.timedelta(days=10))
    return pkibuild.ca(root, "OCSP Test CA", not_before=NOW - dt.timedelta(days=5))


def _client(**kwargs: object) -> OcspClient:
    return OcspClient(timeout=10.0, **kwargs)  # type: ignore[arg-type]


def _ask(server: OcspServer, issuer: Issued, alice: Issued, respond: Responder) -> OcspResult:
    """Serve respond and ask a new client about alice."""
    server.respond = respond
    return _client().check(alice.cert, issuer.cert)


def _refused(server: OcspServer, issuer: Issued, alice: Issued, respond: Responder) -> str:
    """Like _ask; the answer must be "unavailable" from the named responder: its reason."""
    result = _ask(server, issuer, alice, respond)
    assert result.status == "unavailable", result
    assert result.url == server.url
    return result.reason


# --- what openssl answers ---------------------------------------------------------------------


def test_good_from_the_ca_itself(server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    alice = leaf(ca, server.url)
    result = _ask(server, ca, alice,
                  openssl_responder(tmp_path, ca, ca, [index_line(alice.cert)], "-ndays", "1"))
    assert result.status == "good", result.reason
    assert result.url == server.url and result.named
    assert result.next_update is not None
    left = result.next_update - dt.datetime.now(UTC)
    assert dt.timedelta(hours=23) < left <= dt.timedelta(days=1)
    assert server.requests == 1


def test_revoked_with_reason_and_time(server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    alice = leaf(ca, server.url)
    when = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    result = _ask(server, ca, alice, openssl_responder(
        tmp_path, ca, ca, [index_line(alice.cert, (when, "keyCompromise"))], "-ndays", "1"))
    assert result.status == "revoked"
    assert result.revocation_reason == "keyCompromise"
    assert result.revoked_at == when
    assert result.reason == f"revoked (keyCompromise) {when:%Y-%m-%d}"


def test_unknown_serial(server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    alice, bob = leaf(ca, server.url), leaf(ca, server.url, "bob@example.test")
    result = _ask(server, ca, alice,
                  openssl_responder(tmp_path, ca, ca, [index_line(bob.cert)], "-ndays", "1"))
    assert result.status == "unknown"
    assert result.reason == "the responder does not know the certificate"


@pytest.mark.parametrize("options", [(), ("-resp_key_id",)], ids=["by-name", "by-key"])
def test_delegated_responder_accepted(server: OcspServer, ca: Issued, tmp_path: Path,
                                      options: tuple[str, ...]) -> None:
    # RFC 6960 4.2.2.2: issued by the CA with id-kp-OCSPSigning; its ResponderID either way.
    alice = leaf(ca, server.url)
    result = _ask(server, ca, alice, openssl_responder(
        tmp_path, ca, responder_cert(ca), [index_line(alice.cert)], "-ndays", "1", *options))
    assert result.status == "good", result.reason


def test_rsa_pss_signed_response(server: OcspServer, tmp_path: Path) -> None:
    issuing = pkibuild.ca(pkibuild.root("PSS Root", "rsa2048"), "PSS CA", "rsa2048")
    alice = leaf(issuing, server.url)
    result = _ask(server, issuing, alice, openssl_responder(
        tmp_path, issuing, issuing, [index_line(alice.cert)], "-ndays", "1",
        "-rsigopt", "rsa_padding_mode:pss", "-rsigopt", "rsa_pss_saltlen:32"))
    assert result.status == "good", result.reason


def test_no_next_update_but_nonce_echoed_is_good_and_not_cached(
        server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    # openssl without -ndays/-nmin leaves nextUpdate out; its echoed nonce proves freshness.
    alice = leaf(ca, server.url)
    server.respond = openssl_responder(tmp_path, ca, ca, [index_line(alice.cert)])
    client = _client()
    first = client.check(alice.cert, ca.cert)
    assert first.status == "good" and first.next_update is None
    assert client.check(alice.cert, ca.cert).status == "good"
    assert server.requests == 2
    assert len(client.cache) == 0


def test_request_carries_a_fresh_nonce(server: OcspServer, ca: Issued) -> None:
    alice = leaf(ca, server.url)
    seen: list[bytes] = []
    answer = built_responder(ca, ca, next_update=dt.datetime.now(UTC) + dt.timedelta(hours=1))

    def respond(request: bytes) -> bytes:
        parsed = xocsp.load_der_ocsp_request(request)
        seen.append(parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce)
        return answer(request)

    assert _ask(server, ca, alice, respond).status == "good"
    assert _ask(server, ca, alice, respond).status == "good"
    assert len(seen) == 2 and len(seen[0]) == 32 and seen[0] != seen[1]


def test_nextupdate_within_clock_skew_accepted(server: OcspServer, ca: Issued) -> None:
    alice = leaf(ca, server.url)
    now = dt.datetime.now(UTC)
    respond = built_responder(ca, ca, this_update=now - dt.timedelta(hours=1),
                              next_update=now - dt.timedelta(minutes=2))
    assert _ask(server, ca, alice, respond).status == "good"


def test_answer_without_nonce_but_with_next_update_accepted(server: OcspServer, ca: Issued) -> None:
    # RFC 5019 responders answer from pre-signed responses, never with a nonce.
    alice = leaf(ca, server.url)
    respond = built_responder(ca, ca, nonce=None,
                              next_update=dt.datetime.now(UTC) + dt.timedelta(hours=4))
    assert _ask(server, ca, alice, respond).status == "good"


# --- refused responses ------------------------------------------------------------------------


def test_bad_signature_refused(server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    alice = leaf(ca, server.url)
    reason = _refused(server, ca, alice, openssl_responder(
        tmp_path, ca, ca, [index_line(alice.cert)], "-ndays", "1", "-badsig"))
    assert reason == f"{server.url}: bad response signature"


def test_sha1_signed_response_refused(server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    alice = leaf(ca, server.url)
    reason = _refused(server, ca, alice, openssl_responder(
        tmp_path, ca, ca, [index_line(alice.cert)], "-ndays", "1", "-rmd", "sha1"))
    assert reason.endswith("weak response signature algorithm (sha1)")


def test_unrelated_responder_key_refused(server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    # A responder that signs with a key of its own (a self-signed certificate nobody issued).
    alice = leaf(ca, server.url)
    stranger = pkibuild.root("Some OCSP Responder")
    reason = _refused(server, ca, alice, openssl_responder(
        tmp_path, ca, stranger, [index_line(alice.cert)], "-ndays", "1"))
    assert reason.endswith("responder certificate not issued by the certificate's CA")


def test_responder_without_ocsp_signing_refused(
        server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    # Issued by the right CA, but not delegated: no id-kp-OCSPSigning (RFC 6960 4.2.2.2).
    alice = leaf(ca, server.url)
    not_delegated = responder_cert(ca, ocsp_signing=False)
    reason = _refused(server, ca, alice, openssl_responder(
        tmp_path, ca, not_delegated, [index_line(alice.cert)], "-ndays", "1"))
    assert reason.endswith("responder certificate lacks id-kp-OCSPSigning")


def test_responder_certificate_with_a_duplicate_extension_refused(
        server: OcspServer, ca: Issued) -> None:
    # cryptography's DuplicateExtension (RFC 5280 4.2: at most one of each) is no ValueError;
    # from a responder's certificate it escaped the client, which never raises for a bad
    # answer. The certificates of a BasicOCSPResponse are outside the signed part.
    alice = leaf(ca, server.url)
    delegate = responder_cert(ca)
    built = built_responder(ca, delegate)

    def respond(request: bytes) -> bytes:
        answer = aocsp.OCSPResponse.load(built(request))
        basic = answer["response_bytes"]["response"].parsed
        # Signed again by the CA: a CA that issues such a certificate, not a forgery.
        twice = with_an_extension_twice(
            basic["certs"][0].dump(), lambda tbs: ca.key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        basic["certs"] = [ax509.Certificate.load(twice)]
        answer["response_bytes"]["response"] = basic
        return bytes(answer.dump(force=True))

    reason = _refused(server, ca, alice, respond)
    assert reason.endswith("responder certificate extensions unreadable"), reason


def test_delegate_of_another_ca_refused(server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    foreign = responder_cert(pkibuild.root("Other Root"), cn="Other OCSP Responder")
    alice = leaf(ca, server.url)
    reason = _refused(server, ca, alice, openssl_responder(
        tmp_path, ca, foreign, [index_line(alice.cert)], "-ndays", "1"))
    assert reason.endswith("responder certificate not issued by the certificate's CA")


def test_stale_response_refused(server: OcspServer, ca: Issued) -> None:
    alice = leaf(ca, server.url)
    past = dt.datetime.now(UTC) - dt.timedelta(days=2)
    reason = _refused(server, ca, alice, built_responder(
        ca, ca, this_update=past, next_update=past + dt.timedelta(days=1)))
    assert "stale response (nextUpdate" in reason


def test_old_answer_without_nonce_or_next_update_refused(server: OcspServer, ca: Issued) -> None:
    alice = leaf(ca, server.url)
    reason = _refused(server, ca, alice, built_responder(
        ca, ca, nonce=None, this_update=dt.datetime.now(UTC) - dt.timedelta(hours=1)))
    assert "no nextUpdate, no nonce" in reason


def test_future_response_refused(server: OcspServer, ca: Issued) -> None:
    alice = leaf(ca, server.url)
    reason = _refused(server, ca, alice, built_responder(
        ca, ca, this_update=dt.datetime.now(UTC) + dt.timedelta(hours=1)))
    assert "response from the future" in reason


def test_nonce_mismatch_refused(server: OcspServer, ca: Issued) -> None:
    alice = leaf(ca, server.url)
    reason = _refused(server, ca, alice, built_responder(
        ca, ca, nonce=b"\x01" * 32, next_update=dt.datetime.now(UTC) + dt.timedelta(hours=4)))
    assert "nonce mismatch" in reason


def test_answer_about_another_certificate_refused(server: OcspServer, ca: Issued) -> None:
    alice = leaf(ca, server.url)
    reason = _refused(server, ca, alice,
                      built_responder(ca, ca, serial=alice.cert.serial_number + 1))
    assert reason.endswith("response does not answer for the certificate asked about")


def test_responder_error_status(server: OcspServer, ca: Issued) -> None:
    alice = leaf(ca, server.url)
    unsuccessful = xocsp.OCSPResponseBuilder.build_unsuccessful(
        xocsp.OCSPResponseStatus.TRY_LATER).public_bytes(Encoding.DER)
    reason = _refused(server, ca, alice, lambda _req: unsuccessful)
    assert reason.endswith("responder answered try_later")


def test_malformed_answer(server: OcspServer, ca: Issued) -> None:
    alice = leaf(ca, server.url)
    reason = _refused(server, ca, alice, lambda _req: b"<html>not OCSP</html>")
    assert reason == f"{server.url}: malformed response"


# --- no answer at all -------------------------------------------------------------------------


def test_responder_down(ca: Issued) -> None:
    url = f"http://127.0.0.1:{free_port()}/ocsp"
    alice = leaf(ca, url)
    result = _client().check(alice.cert, ca.cert)
    assert result.status == "unavailable" and result.named
    assert result.reason.startswith(f"{url}: cannot connect")


def test_responder_that_does_not_answer_times_out(server: OcspServer, ca: Issued,
                                                  tmp_path: Path) -> None:
    alice = leaf(ca, server.url)
    server.respond = openssl_responder(tmp_path, ca, ca, [index_line(alice.cert)], "-ndays", "1")
    server.hold = threading.Event()
    result = OcspClient(timeout=0.3).check(alice.cert, ca.cert)
    server.released.set()
    assert result.status == "unavailable"
    assert result.reason == f"{server.url}: timed out after 0.3 s"


def test_no_responder_named(ca: Issued) -> None:
    alice = leaf(ca, None)
    assert responder_url(alice.cert) is None
    result = _client().check(alice.cert, ca.cert)
    assert result.status == "unavailable" and not result.named
    assert result.reason == "no responder named"


def test_responder_url_only_http() -> None:
    root = pkibuild.root("AIA Root")
    assert responder_url(leaf(root, "ldap://127.0.0.1/cn=ocsp").cert) is None
    assert responder_url(leaf(root, "HTTPS://ocsp.example/").cert) == "HTTPS://ocsp.example/"


# --- the cache --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_cached_until_next_update(server: OcspServer, ca: Issued, tmp_path: Path) -> None:
    alice = leaf(ca, server.url)
    server.respond = openssl_responder(tmp_path, ca, ca, [index_line(alice.cert)], "-nmin", "30")
    clock = Clock()
    cache = OcspCache()
    client = OcspClient(timeout=10.0, cache=cache, clock=clock)
    first = client.check(alice.cert, ca.cert)
    assert first.status == "good" and first.next_update is not None
    clock.now += dt.timedelta(minutes=20)
    # A second client sharing the cache (another thread's) gets the same answer unasked.
    assert OcspClient(cache=cache, clock=clock).check(alice.cert, ca.cert) == first
    assert server.requests == 1
    # Past nextUpdate the responder is asked again (its new answer is about as fresh as the first,
    # so still within CLOCK_SKEW of the moved clock).
    clock.now = first.next_update + dt.timedelta(seconds=1)
    assert client.check(alice.cert, ca.cert).status == "good"
    assert server.requests == 2


def test_failure_not_retried_within_retry_after(ca: Issued) -> None:
    url = f"http://127.0.0.1:{free_port()}/ocsp"
    alice = leaf(ca, url)
    clock = Clock()
    client = OcspClient(timeout=5.0, retry_after=60, clock=clock)
    first = client.check(alice.cert, ca.cert)
    assert first.status == "unavailable"
    assert len(client.cache) == 1
    assert client.check(alice.cert, ca.cert) is first
    clock.now += dt.timedelta(seconds=61)
    assert client.check(alice.cert, ca.cert) is not first


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="timeout: must be positive"):
        OcspClient(timeout=0)
    with pytest.raises(ValueError, match="retry_after"):
        OcspClient(retry_after=-1)
    with pytest.raises(ValueError, match="max_entries"):
        OcspCache(0)


def test_cache_is_bounded() -> None:
    cache = OcspCache(max_entries=2)
    until = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    for serial in range(3):
        cache.put((b"k", serial), OcspResult("good", "good"), until)
    assert len(cache) == 1
    assert cache.get((b"k", 2), dt.datetime.now(UTC)) is not None
