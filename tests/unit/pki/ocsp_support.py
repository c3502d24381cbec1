"""For the OCSP tests: a loopback HTTP responder whose answers come from a real `openssl ocsp`,
or from cryptography's OCSPResponseBuilder for what openssl will not make (stale, wrong nonce).

`openssl ocsp -port N` can only listen on every interface (OpenSSL 3.0 takes a bare port), and
the tests stay on loopback; so the HTTP side is ours (http.server on 127.0.0.1) and each request
body goes through `openssl ocsp -index ... -reqin REQ -respout RESP`: the same responder code,
the same index file, signatures and nonce handling as openssl's own server.
"""

from __future__ import annotations

import datetime as dt
import http.server
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from tests.unit.pki import pkibuild
from tests.unit.pki.pkibuild import Issued

Responder = Callable[[bytes], bytes]
"""Turns a DER OCSPRequest into the DER response body."""


@dataclass
class OcspServer:
    """POST bodies go to ``respond``; ``requests`` counts them. ``hold`` makes the handler wait
    (a responder that does not answer) until the event is set or the test ends."""

    respond: Responder | None = None
    requests: int = 0
    port: int = 0
    hold: threading.Event | None = None
    released: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ocsp"


def _handler(server: OcspServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            server.requests += 1
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if server.hold is not None:
                server.released.wait(30)
            assert server.respond is not None, "no responder set"
            answer = server.respond(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep test output clean

    return Handler


def serve() -> Iterator[OcspServer]:
    """Generator for a fixture: a responder on a loopback port until the test ends."""
    state = OcspServer()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    httpd.block_on_close = False
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# --- certificates -----------------------------------------------------------------------------

NOW = dt.datetime.now(dt.UTC)


def aia(url: str) -> tuple[x509.ExtensionType, bool]:
    """An AIA extension naming url as the OCSP responder (RFC 5280 4.2.2.1)."""
    desc = x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                  x509.UniformResourceIdentifier(url))
    return x509.AuthorityInformationAccess([desc]), False


def leaf(issuer: Issued, url: str | None, email: str = "alice@example.test") -> Issued:
    extra = [aia(url)] if url is not None else []
    return pkibuild.ee(issuer, email, not_before=NOW - dt.timedelta(days=1), days=30,
                       extra=extra)


def responder_cert(issuer: Issued, *, ocsp_signing: bool = True,
                   cn: str = "Test OCSP Responder") -> Issued:
    """A delegated responder certificate of issuer (RFC 6960 4.2.2.2), id-pkix-ocsp-nocheck."""
    eku = [ExtendedKeyUsageOID.OCSP_SIGNING] if ocsp_signing else [
        ExtendedKeyUsageOID.EMAIL_PROTECTION]
    return pkibuild.ee(issuer, cn, not_before=NOW - dt.timedelta(days=1), days=30,
                       usage=pkibuild.key_usage("digital_signature"), eku=eku,
                       extra=[(x509.OCSPNoCheck(), False)])


# --- responders -------------------------------------------------------------------------------


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%y%m%d%H%M%SZ")


def _serial_hex(serial: int) -> str:
    # openssl looks serials up as BN_bn2hex prints them: upper case, whole bytes.
    return serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big").hex().upper()


def index_line(cert: x509.Certificate, revoked: tuple[dt.datetime, str] | None = None) -> str:
    """One line of an openssl ca index.txt: V(alid) or R(evoked) at a time, with a reason."""
    expiry = _stamp(cert.not_valid_after_utc)
    serial = _serial_hex(cert.serial_number)
    if revoked is None:
        return f"V\t{expiry}\t\t{serial}\tunknown\t/CN=x\n"
    when, reason = revoked
    return f"R\t{expiry}\t{_stamp(when)},{reason}\t{serial}\tunknown\t/CN=x\n"


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    data: bytes = obj.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return data


def openssl_responder(folder: Path, ca: Issued, signer: Issued, lines: Sequence[str],
                      *args: str) -> Responder:
    """`openssl ocsp` answering for ca's certificates from an index of ``lines``, signing with
    signer (ca itself or a delegate); ``args`` are more openssl ocsp options (-ndays 1 ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.txt").write_text("".join(lines))
    (folder / "ca.pem").write_bytes(_pem(ca.cert))
    (folder / "rsigner.pem").write_bytes(_pem(signer.cert))
    (folder / "rkey.pem").write_bytes(_pem(signer.key))
    lock = threading.Lock()

    def respond(request: bytes) -> bytes:
        with lock, tempfile.TemporaryDirectory(dir=folder) as tmp:
            req, resp = Path(tmp) / "req.der", Path(tmp) / "resp.der"
            req.write_bytes(request)
            done = subprocess.run(
                ["openssl", "ocsp", "-index", str(folder / "index.txt"),
                 "-CA", str(folder / "ca.pem"), "-rsigner", str(folder / "rsigner.pem"),
                 "-rkey", str(folder / "rkey.pem"), "-reqin", str(req), "-respout", str(resp),
                 *args],
                capture_output=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr.decode(errors="replace")
            return resp.read_bytes()

    return respond


def built_responder(ca: Issued, signer: Issued, *, this_update: dt.datetime | None = None,
                    next_update: dt.datetime | None = None, nonce: bytes | None | bool = True,
                    serial: int | None = None,
                    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD) -> Responder:
    """A response made by cryptography's builder for the asked certificate (or ``serial``).

    nonce: True echoes the request's, None leaves it out, bytes sends those instead.
    """

    def respond(request_der: bytes) -> bytes:
        request = ocsp.load_der_ocsp_request(request_der)
        start = this_update or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            request.issuer_name_hash, request.issuer_key_hash,
            serial if serial is not None else request.serial_number, request.hash_algorithm,
            status, start, next_update, None, None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
        if signer is not ca:
            builder = builder.certificates([signer.cert])
        if nonce is True:
            echoed = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            builder = builder.add_extension(x509.OCSPNonce(echoed), critical=False)
        elif isinstance(nonce, bytes):
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return builder.sign(signer.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    return respond
