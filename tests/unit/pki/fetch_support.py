"""For the CRL download tests: an "external" CA that publishes CRLs, a loopback HTTP server that
serves them, and a private slapd holding a certificateRevocationList;binary entry.

The CA is the session's cached CaPair (tests.unit.pki.ca_support); its certificates and CRLs
are built with smimegate.pki's pure builders, so the gateway's store only ever sees what a
relying party would: the root, the intermediate, end-entity certificates and downloaded CRLs.
"""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from smimegate.pki.ca import CaPair
from smimegate.pki.crl import Entry, build_crl
from smimegate.pki.issue import IssueRequest, Subject, issue_certificate
from tests.helpers.ports import free_port
from tests.unit.pki.ca_support import ca_pair


@dataclass(frozen=True)
class Leaf:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def leaf(pair: CaPair, email: str, crl_urls: Sequence[str] = ()) -> Leaf:
    """An end-entity certificate of pair's intermediate naming crl_urls as distribution points."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_certificate(IssueRequest(Subject(email), days=30, crl_urls=tuple(crl_urls)),
                             key.public_key(), pair.intermediate, pair.intermediate_key)
    return Leaf(cert, key)


def crl(
    pair: CaPair | None = None,
    revoked: Sequence[int] = (),
    number: int = 1,
    *,
    this_update: dt.datetime | None = None,
    days: int = 7,
) -> x509.CertificateRevocationList:
    """A CRL of pair's intermediate (default: the session CA) listing the serials revoked."""
    pair = pair or ca_pair()
    now = this_update or dt.datetime.now(dt.UTC)
    entries = [Entry(s, now - dt.timedelta(minutes=1), "key-compromise") for s in revoked]
    return build_crl(pair.intermediate, pair.intermediate_key, entries, number,
                     next_update_days=days, now=now)


def der(value: x509.CertificateRevocationList) -> bytes:
    return value.public_bytes(Encoding.DER)



@dataclass
class Publisher:
    """A loopback HTTP server: ``files[path]`` is served as application/pkix-crl, other paths
    get 404, ``slow[path]`` seconds of delay come first. ``hits`` counts requests per path."""

    files: dict[str, bytes] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(pub: Publisher) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            pub.hits[self.path] = pub.hits.get(self.path, 0) + 1
            time.sleep(pub.slow.get(self.path, 0.0))
            body = pub.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-crl")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep test output clean

    return Handler


def serve() -> tuple[Publisher, http.server.ThreadingHTTPServer]:
    pub = Publisher()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(pub))
    server.daemon_threads = True
    server.block_on_close = False  # a slow handler must not hold up the test's teardown
    pub.port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return pub, server


def publisher() -> Iterator[Publisher]:
    """Generator for a fixture: the server runs until the test ends."""
    pub, server = serve()
    try:
        yield pub
    finally:
        server.shutdown()
        server.server_close()


# --- slapd ----------------------------------------------------------------------------------

SUFFIX = "dc=crl,dc=test"
CRL_ENTRY = f"cn=Test Issuing CA,{SUFFIX}"


@dataclass(frozen=True)
class Slapd:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, dn: str = CRL_ENTRY, query: str = "") -> str:
        from urllib.parse import quote

        return f"ldap://127.0.0.1:{self.port}/{quote(dn, safe='=,')}{query}"


def start_slapd(folder: Path, crl_der: bytes) -> Slapd:
    """A private slapd (slapd.conf, one mdb database, core schema) on a loopback port with
    CRL_ENTRY holding crl_der as certificateRevocationList;binary (RFC 4523 cRLDistributionPoint).
    Fails the test loudly when slapd does not come up."""
    import base64

    db = folder / "db"
    db.mkdir()
    conf = folder / "slapd.conf"
    conf.write_text(
        "include /etc/ldap/schema/core.schema\n"
        "modulepath /usr/lib/ldap\n"
        "moduleload back_mdb\n"
        f"pidfile {folder / 'slapd.pid'}\n"
        "database mdb\n"
        f'suffix "{SUFFIX}"\n'
        f'rootdn "cn=admin,{SUFFIX}"\n'
        f"directory {db}\n"
        "maxsize 10485760\n"
        "access to * by * read\n"
    )
    ldif = folder / "data.ldif"
    ldif.write_text(
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: crl\ndc: crl\n\n"
        f"dn: {CRL_ENTRY}\nobjectClass: cRLDistributionPoint\ncn: Test Issuing CA\n"
        f"certificateRevocationList;binary:: {base64.b64encode(crl_der).decode()}\n"
    )
    done = subprocess.run(["slapadd", "-f", str(conf), "-l", str(ldif)], capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, f"slapadd: {done.stderr.decode(errors='replace')}"
    port = free_port()
    # -d 0: stay in the foreground (no fork), so the process is ours to stop.
    log = folder / "slapd.log"
    with log.open("wb") as sink:  # a file, not a pipe nobody drains
        process = subprocess.Popen(
            ["slapd", "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
            stdout=subprocess.DEVNULL, stderr=sink,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = log.read_text(errors="replace")
            raise AssertionError(f"slapd exited with {process.returncode}: {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return Slapd(port, process)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("slapd did not listen within 20 s")


def stop_slapd(slapd: Slapd) -> None:
    slapd.process.terminate()
    try:
        slapd.process.wait(10)
    except subprocess.TimeoutExpired:
        slapd.process.kill()
        slapd.process.wait(10)
