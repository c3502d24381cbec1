"""The "minimal milter" of issue 5 item 12, the reference bench/postfix_bench.py --minimal runs.

    python bench/minimal_milter.py SOCKET SIGNER_KEY.pem SIGNER_CERT.pem RECIPIENT_CERT.pem
    python bench/minimal_milter.py SOCKET --floor

A pymilter milter with no store, no policy and no checks: every message is signed with one key
and encrypted to one certificate by cryptography's PKCS7 builders (RSA PKCS#1 v1.5, AES-256-CBC
as the builders do), its MIME headers replaced and its body swapped. It takes the same
protocol shortcuts as smimegate's session (collecting callbacks @noreply, DATA answered on
inet: and negotiated away on unix:, the body kept in memory) and TCP_NODELAY on an inet: listener, so that the comparison is of the
work per message, not of the socket. Not part of the product; prints nothing per message.

``--floor``: no cryptography at all; the same header edits and a body replaced by what came
in. What pymilter and libmilter cost per message whatever the milter does (bench/cost_bench.py
prints it beside the RSA operation: the part of the aim no Python code of ours can remove).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import Milter
import milter
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

MIME_HEADERS = ("content-type", "content-transfer-encoding", "content-disposition",
                "mime-version")


def main() -> None:
    spec = sys.argv[1]
    floor = sys.argv[2:] == ["--floor"]
    if not floor:
        key_path, cert_path, rcpt_path = sys.argv[2:5]
        key: Any = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        rcpt = x509.load_pem_x509_certificate(Path(rcpt_path).read_bytes())

    class Minimal(Milter.Base):  # type: ignore[misc]
        def __init__(self) -> None:
            self.headers: list[tuple[str, str]] = []
            self.chunks: list[bytes] = []

        @Milter.noreply  # type: ignore[misc]
        def envfrom(self, mailfrom: str, *params: str) -> int:
            self.headers, self.chunks = [], []
            return int(Milter.CONTINUE)

        if not spec.startswith("unix:"):  # as smimegate: DATA answered on inet: only
            def data(self) -> int:
                return int(Milter.CONTINUE)

        @Milter.noreply  # type: ignore[misc]
        def header(self, name: str, value: str) -> int:
            self.headers.append((name, value))
            return int(Milter.CONTINUE)

        @Milter.noreply  # type: ignore[misc]
        def body(self, chunk: bytes) -> int:
            self.chunks.append(chunk)
            return int(Milter.CONTINUE)

        def eom(self) -> int:
            mime = [(n, v) for n, v in self.headers if n.lower() in MIME_HEADERS[:3]]
            head = "".join(f"{n}: {v}\r\n" for n, v in mime) or "Content-Type: text/plain\r\n"
            entity = head.encode() + b"\r\n" + b"".join(self.chunks)
            if floor:  # the same edits as below, no cryptography
                for name in MIME_HEADERS:
                    if any(n.lower() == name for n, _ in self.headers):
                        self.chgheader(name, 1, None)
                self.addheader("MIME-Version", "1.0")
                self.addheader("Content-Type", "application/pkcs7-mime; smime-type="
                               "enveloped-data; name=smime.p7m")
                self.addheader("Content-Transfer-Encoding", "base64")
                self.replacebody(entity)
                return int(Milter.CONTINUE)
            signed = (pkcs7.PKCS7SignatureBuilder().set_data(entity)
                      .add_signer(cert, key, hashes.SHA256())
                      .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature]))
            sealed = (pkcs7.PKCS7EnvelopeBuilder().set_data(signed).add_recipient(rcpt)
                      .encrypt(serialization.Encoding.SMIME, []))
            new_head, _, new_body = sealed.replace(b"\n", b"\r\n").partition(b"\r\n\r\n")
            for name in MIME_HEADERS:
                if any(n.lower() == name for n, _ in self.headers):
                    self.chgheader(name, 1, None)
            for line in new_head.decode().split("\r\n"):
                name, _, value = line.partition(":")
                self.addheader(name.strip(), value.strip())
            self.replacebody(new_body)
            return int(Milter.CONTINUE)  # as smimegate answers (the MTA delivers either way)

    real_open = milter.opensocket

    def opensocket(rmsock: bool) -> None:
        real_open(rmsock)
        if spec.startswith("inet:"):
            port = int(spec[5:].partition("@")[0])
            for name in os.listdir("/proc/self/fd"):
                try:
                    sock = socket.socket(fileno=os.dup(int(name)))
                except OSError:
                    continue
                with sock:
                    try:
                        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                        ours = sock.family == socket.AF_INET and sock.getsockname()[1] == port
                    except OSError:
                        continue
                    if listening and ours:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    milter.opensocket = opensocket
    os.umask(0)  # a unix: socket must be writable by user postfix; this is a bench milter
    Milter.factory = Minimal
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY)
    Milter.runmilter("minimal", spec, timeout=60)


if __name__ == "__main__":
    main()
