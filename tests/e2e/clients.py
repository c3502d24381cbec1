"""Wrappers around real S/MIME clients for the interoperability tests.

Each wrapper drives one installed program exactly as /work/shared/INTEROP.md describes
(OpenSSL 3.0 ``openssl cms``, gpgsm 2.2, NSS ``cmsutil``, s-nail 14.9) through temporary files.
gpgsm and cmsutil work on raw CMS, so this module also plays the part of their mail user agent:
the small MIME helpers below split and wrap multipart/signed (RFC 8551 3.5) and
application/pkcs7-mime (RFC 8551 3.2) entities. They are deliberately independent of
smimegate.smime.mime, so that a message made for the engine is not built by the code under test.

Every failure of a program raises ClientError with its command line, exit code and stderr.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.helpers.testpki import Identity, TestCA

P12_PASSWORD = "interop-pw"
TIMEOUT = 30


class ClientError(AssertionError):
    """A client program failed; the message holds its command, exit code and output."""


def run(
    args: Sequence[str | Path],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program, capture its output; raise ClientError on a non-zero exit when check."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [str(a) for a in args],
        input=input,
        capture_output=True,
        env=full_env,
        timeout=TIMEOUT,
        check=False,
    )
    if check and proc.returncode != 0:
        raise ClientError(
            f"{' '.join(str(a) for a in args)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout[-2000:]!r}\nstderr: {proc.stderr[-2000:]!r}"
        )
    return proc


# ---------------------------------------------------------------------------------------------
# Test identities on disk


@dataclass(frozen=True)
class Party:
    """One identity written out in every form the clients want."""

    identity: Identity
    key: Path  # PKCS#8 PEM
    crt: Path  # PEM
    keycert: Path  # key + certificate in one PEM (s-nail)
    p12: Path  # legacy PBE-SHA1-3DES PKCS#12, password P12_PASSWORD

    @property
    def email(self) -> str:
        return self.identity.email

    @property
    def cert(self) -> x509.Certificate:
        return self.identity.cert

    @property
    def private_key(self) -> Any:
        return self.identity.key


def legacy_p12(identity: Identity, ca_cert: x509.Certificate, password: str) -> bytes:
    """PKCS#12 with PBE-SHA1-3DES and a SHA-1 MAC: gpgsm 2.2 cannot read OpenSSL 3's PBES2."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(password.encode())
    )
    return pkcs12.serialize_key_and_certificates(
        identity.email.encode(), identity.key, identity.cert, [ca_cert], encryption
    )


def write_party(folder: Path, stem: str, identity: Identity, ca_cert: x509.Certificate) -> Party:
    """Write STEM.key, STEM.crt, STEM.keycert.pem and STEM.p12 into folder."""
    key, crt = identity.write(folder, stem)
    keycert = folder / f"{stem}.keycert.pem"
    keycert.write_bytes(identity.key_pem() + identity.cert_pem())
    p12 = folder / f"{stem}.p12"
    p12.write_bytes(legacy_p12(identity, ca_cert, P12_PASSWORD))
    return Party(identity=identity, key=key, crt=crt, keycert=keycert, p12=p12)


@dataclass(frozen=True)
class Pki:
    """A throwaway CA, alice (the sender) and bob (the recipient), RSA 2048, plus EC P-256 twins."""

    folder: Path
    ca: TestCA
    ca_crt: Path
    alice: Party
    bob: Party
    alice_ec: Party
    bob_ec: Party


def make_pki(folder: Path) -> Pki:
    """Create the CA and the four identities under folder."""
    ca = TestCA()
    ca_crt = folder / "ca.crt"
    ca_crt.write_bytes(ca.cert_pem())
    return Pki(
        folder=folder,
        ca=ca,
        ca_crt=ca_crt,
        alice=write_party(folder, "alice", ca.issue("alice@a.test", "rsa2048"), ca.cert),
        bob=write_party(folder, "bob", ca.issue("bob@b.test", "rsa2048"), ca.cert),
        alice_ec=write_party(folder, "alice-ec", ca.issue("alice-ec@a.test", "ec-p256"), ca.cert),
        bob_ec=write_party(folder, "bob-ec", ca.issue("bob-ec@b.test", "ec-p256"), ca.cert),
    )


# ---------------------------------------------------------------------------------------------
# Minimal MIME, playing the part of a mail user agent


def crlf(data: bytes) -> bytes:
    """All line ends to CRLF: the canonical form that is signed (RFC 8551 3.1.1)."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def lf(data: bytes) -> bytes:
    """All line ends to LF, as mbox files and Unix tools store mail."""
    return data.replace(b"\r\n", b"\n")


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    """(header block, body) at the first empty line; an entity may have no headers at all."""
    match = re.search(rb"(?:^|\r?\n)\r?\n", raw)
    if match is None:
        return raw, b""
    return raw[: match.start()], raw[match.end():]


def header(head: bytes, name: str) -> str | None:
    """The unfolded value of the first header called name (case-insensitive), or None."""
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", head).decode("latin-1")
    for line in re.split(r"\r?\n", unfolded):
        field, sep, value = line.partition(":")
        if sep and field.strip().lower() == name.lower():
            return value.strip()
    return None


def param(value: str, name: str) -> str | None:
    """A Content-Type parameter, quoted or not."""
    match = re.search(rf';\s*{name}\s*=\s*(?:"([^"]*)"|([^;\s]+))', value, re.IGNORECASE)
    if match is None:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2)


def content_type(raw: bytes) -> str:
    """The Content-Type header of a message or entity ('text/plain' when there is none)."""
    return header(split_head(raw)[0], "Content-Type") or "text/plain"


def split_signed(raw: bytes) -> tuple[bytes, bytes]:
    """(first body part exactly as it is, signature DER) of a multipart/signed message.

    RFC 2046 5.1.1: the line end before a delimiter belongs to the delimiter.
    """
    ctype = content_type(raw)
    if not ctype.lower().startswith("multipart/signed"):
        raise ValueError(f"not multipart/signed: {ctype}")
    boundary = param(ctype, "boundary")
    if boundary is None:
        raise ValueError("multipart/signed without boundary")
    _, body = split_head(raw)
    delim = re.escape(b"--" + boundary.encode("latin-1"))
    starts = [m for m in re.finditer(rb"(?:^|\r?\n)" + delim + rb"(--)?[ \t]*\r?\n?", body)]
    if len(starts) < 3:
        raise ValueError(f"multipart/signed with {len(starts) - 1} parts")
    first = body[starts[0].end(): starts[1].start()]
    second = body[starts[1].end(): starts[2].start()]
    sig_head, sig_body = split_head(second)
    return first, base64.b64decode(b"".join(sig_body.split()))


def wrap_signed(part: bytes, signature_der: bytes, micalg: str = "sha-256") -> bytes:
    """A multipart/signed entity (RFC 8551 3.5.3) around part and a detached signature."""
    boundary = "----=_interop_" + base64.b32encode(os.urandom(10)).decode().lower()
    sig_b64 = base64.encodebytes(signature_der).replace(b"\n", b"\r\n")
    return (
        b"MIME-Version: 1.0\r\n"
        + f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        f'micalg={micalg}; boundary="{boundary}"\r\n\r\n'.encode()
        + b"This is an S/MIME signed message\r\n\r\n"
        + f"--{boundary}\r\n".encode()
        + crlf(part)
        + f"\r\n--{boundary}\r\n".encode()
        + b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n"
        + b'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n'
        + sig_b64
        + f"\r\n--{boundary}--\r\n".encode()
    )


def wrap_pkcs7_mime(der: bytes, smime_type: str) -> bytes:
    """An application/pkcs7-mime entity (RFC 8551 3.2) carrying der in base64."""
    return (
        b"MIME-Version: 1.0\r\n"
        + f'Content-Type: application/pkcs7-mime; smime-type={smime_type}; name="smime.p7m"\r\n'
        .encode()
        + b"Content-Transfer-Encoding: base64\r\n"
        + b'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n'
        + base64.encodebytes(der).replace(b"\n", b"\r\n")
    )


def pkcs7_der(raw: bytes) -> bytes:
    """The DER inside a base64 application/pkcs7-mime message or entity."""
    ctype = content_type(raw).lower()
    if "pkcs7-mime" not in ctype:
        raise ValueError(f"not application/pkcs7-mime: {ctype}")
    return base64.b64decode(b"".join(split_head(raw)[1].split()), validate=True)


def join_message(outer: Sequence[tuple[str, str]], entity: bytes) -> bytes:
    """An RFC 5322 message: the outer headers, then the entity's own headers and body."""
    head = b"".join(f"{name}: {value}\r\n".encode() for name, value in outer)
    return head + crlf(entity)


def mbox_from(messages: Sequence[bytes]) -> bytes:
    """An mbox file (LF line ends, From_ lines, '>From ' quoting) holding messages."""
    out = b""
    for message in messages:
        text = re.sub(rb"(?m)^(>*From )", rb">\1", lf(message))
        out += b"From interop@a.test Sat Jan  3 10:00:00 2026\n" + text.rstrip(b"\n") + b"\n\n"
    return out


def first_mbox_message(mbox: bytes) -> bytes:
    """The first message of an mbox, without its From_ line and the separating blank line."""
    lines = lf(mbox).split(b"\n")
    if not lines or not lines[0].startswith(b"From "):
        raise ValueError("not an mbox file")
    body: list[bytes] = []
    for line in lines[1:]:
        if line.startswith(b"From "):
            break
        body.append(re.sub(rb"^>(>*From )", rb"\1", line))
    while body and body[-1] == b"":
        body.pop()
    return b"\n".join(body) + b"\n"


@dataclass(frozen=True)
class Verified:
    """What a client concluded about a signature."""

    good: bool
    content: bytes
    detail: str


def _stamp() -> str:
    """A unique prefix for temp files, so tests sharing a client folder never collide."""
    return uuid.uuid4().hex[:12]


# ---------------------------------------------------------------------------------------------
# OpenSSL


class OpenSSL:
    """``openssl cms`` in SMIME (MIME) format with temp files under folder."""

    def __init__(self, pki: Pki, folder: Path) -> None:
        self.pki = pki
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _file(self, name: str, data: bytes) -> Path:
        path = self.folder / f"{_stamp()}-{name}"
        path.write_bytes(data)
        return path

    def sign(
        self, entity: bytes, signer: Party, *, opaque: bool = False, md: str = "sha256"
    ) -> bytes:
        """A multipart/signed (or, opaque, application/pkcs7-mime) message from entity."""
        args: list[str | Path] = [
            "openssl", "cms", "-sign", "-in", self._file("in.mime", entity),
            "-signer", signer.crt, "-inkey", signer.key, "-certfile", self.pki.ca_crt, "-md", md,
        ]
        if opaque:
            args.append("-nodetach")
        return run(args).stdout

    def encrypt(
        self,
        message: bytes,
        recipient: Party,
        *,
        cipher: str = "aes-256-cbc",
        oaep: bool = False,
        ecdh_kdf_md: str | None = None,
    ) -> bytes:
        """application/pkcs7-mime enveloped-data (authEnveloped-data for -aes-*-gcm)."""
        args: list[str | Path] = [
            "openssl", "cms", "-encrypt", f"-{cipher}", "-in", self._file("in.mime", message),
            "-recip", recipient.crt,
        ]
        if oaep:
            args += ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"]
        if ecdh_kdf_md:
            args += ["-keyopt", f"ecdh_kdf_md:{ecdh_kdf_md}"]
        return run(args).stdout

    def decrypt(self, message: bytes, recipient: Party) -> bytes:
        """The decrypted content of an enveloped or authEnveloped message."""
        return run([
            "openssl", "cms", "-decrypt", "-in", self._file("enc.eml", message),
            "-recip", recipient.crt, "-inkey", recipient.key,
        ]).stdout

    def verify(self, message: bytes) -> Verified:
        """Verify a signed message against the test CA; good means exit 0.

        Text mode as in INTEROP.md: with -binary, OpenSSL 3.0 fails CRLF multipart/signed input.
        """
        proc = run(
            ["openssl", "cms", "-verify", "-in", self._file("signed.eml", message),
             "-CAfile", self.pki.ca_crt],
            check=False,
        )
        detail = proc.stderr.decode(errors="replace")
        good = proc.returncode == 0 and "Verification successful" in detail
        return Verified(good=good, content=proc.stdout, detail=detail)

    def cms_print(self, message: bytes) -> str:
        """``openssl cms -cmsout -print`` of a pkcs7-mime message (to check algorithms)."""
        return run([
            "openssl", "cms", "-cmsout", "-print", "-in", self._file("print.eml", message),
        ]).stdout.decode()


# ---------------------------------------------------------------------------------------------
# gpgsm


class Gpgsm:
    """gpgsm 2.2 in a throwaway GNUPGHOME holding the CA and the PKCS#12 of the given parties."""

    def __init__(self, pki: Pki, home: Path, parties: Sequence[Party]) -> None:
        self.pki = pki
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        (home / "gpgsm.conf").write_text(
            "disable-crl-checks\ndisable-policy-checks\ndisable-dirmngr\n"
        )
        (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
        self.env = {"GNUPGHOME": str(home)}
        self._gpgsm("--import", pki.ca_crt)
        for party in parties:
            self._import_p12(party)
        # "S relax": trust the root for S/MIME and do not insist on every X.509 nicety.
        fingerprint = pki.ca.cert.fingerprint(hashes.SHA1()).hex().upper()
        (home / "trustlist.txt").write_text(f"{fingerprint} S relax\n")

    def _import_p12(self, party: Party) -> None:
        """Import the party's PKCS#12. gpgsm 2.2.40 refuses about one file in 60 of those
        cryptography writes ("decryption failed", "possibly bad passphrase"), always the same
        file, which OpenSSL and NSS read: which one depends on the random salts. The same key
        and certificates written again, with new salts, then import; the file the other
        clients read stays as it is."""
        path = party.p12
        for _ in range(5):
            done = self._gpgsm("--pinentry-mode", "loopback", "--passphrase-fd", "0",
                               "--import", path, input=P12_PASSWORD.encode() + b"\n",
                               check=False)
            if done.returncode == 0:
                return
            path = self._file("again.p12", legacy_p12(party.identity, self.pki.ca.cert,
                                                      P12_PASSWORD))
        raise ClientError(f"gpgsm --import {party.p12} failed five times with new salts:\n"
                          f"{done.stderr.decode(errors='replace')}")

    def _gpgsm(
        self, *args: str | Path, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        return run(["gpgsm", "--batch", *args], input=input, env=self.env, check=check)

    def _file(self, name: str, data: bytes) -> Path:
        path = self.home / f"{_stamp()}-{name}"
        path.write_bytes(data)
        return path

    def close(self) -> None:
        """Stop gpg-agent and friends of this home (INTEROP.md: before deleting it)."""
        run(["gpgconf", "--kill", "all"], env=self.env, check=False)

    def sign_detached(self, data: bytes, signer: Party) -> bytes:
        """A detached SignedData DER over data (with the signer's chain)."""
        out = self.home / f"{_stamp()}-sig.der"
        self._gpgsm(
            "--pinentry-mode", "loopback", "--passphrase-fd", "0", "-u", signer.email,
            "--include-certs", "-1", "--detach-sign", "-o", out, self._file("data", data),
            input=P12_PASSWORD.encode() + b"\n",
        )
        return out.read_bytes()

    def encrypt(self, data: bytes, recipient: Party) -> bytes:
        """EnvelopedData DER (AES-256-CBC, RSA v1.5) of data for recipient."""
        out = self.home / f"{_stamp()}-env.der"
        self._gpgsm(
            "--cipher-algo", "AES256", "-r", recipient.email, "--encrypt", "-o", out,
            self._file("plain", data),
        )
        return out.read_bytes()

    def decrypt(self, der: bytes) -> bytes:
        """Decrypt EnvelopedData DER with whichever imported key matches."""
        out = self.home / f"{_stamp()}-dec"
        self._gpgsm(
            "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--decrypt", "-o", out,
            self._file("env.der", der),
            input=P12_PASSWORD.encode() + b"\n",
        )
        return out.read_bytes()

    def verify_detached(self, signature_der: bytes, data: bytes) -> Verified:
        """Good means GOODSIG and TRUST_FULLY on the status fd and exit 0."""
        proc = self._gpgsm(
            "--status-fd", "1", "--verify", self._file("p.sig", signature_der),
            self._file("part", data),
            check=False,
        )
        status = proc.stdout.decode(errors="replace")
        good = (
            proc.returncode == 0
            and "[GNUPG:] GOODSIG" in status
            and "[GNUPG:] TRUST_FULLY" in status
        )
        return Verified(good=good, content=data, detail=status + proc.stderr.decode(errors="replace"))


# ---------------------------------------------------------------------------------------------
# NSS


class Nss:
    """NSS ``cmsutil`` (Thunderbird's library) over an sql: database with the CA and PKCS#12s."""

    def __init__(self, pki: Pki, db: Path, parties: Sequence[Party]) -> None:
        self.pki = pki
        self.db = db
        db.mkdir(parents=True, exist_ok=True)
        self.dbspec = f"sql:{db}"
        run(["certutil", "-N", "-d", self.dbspec, "--empty-password"])
        run(["certutil", "-A", "-d", self.dbspec, "-n", "CA", "-t", "C,C,C", "-i", pki.ca_crt])
        for party in parties:
            run(["pk12util", "-i", party.p12, "-d", self.dbspec, "-W", P12_PASSWORD, "-K", ""])

    def _file(self, name: str, data: bytes) -> Path:
        path = self.db / f"{_stamp()}-{name}"
        path.write_bytes(data)
        return path

    def sign_detached(self, data: bytes, signer: Party) -> bytes:
        """A detached SignedData DER (SHA-256, signing time, S/MIME capabilities, certs)."""
        out = self.db / f"{_stamp()}-p.sig"
        run([
            "cmsutil", "-S", "-d", self.dbspec, "-N", signer.email, "-T", "-G", "-P",
            "-H", "SHA256", "-i", self._file("part", data), "-o", out,
        ])
        return out.read_bytes()

    def encrypt(self, data: bytes, recipient: Party) -> bytes:
        """EnvelopedData DER of data for recipient (NSS picks the cipher)."""
        out = self.db / f"{_stamp()}-env.der"
        run([
            "cmsutil", "-E", "-d", self.dbspec, "-r", recipient.email,
            "-i", self._file("plain", data), "-o", out,
        ])
        return out.read_bytes()

    def decrypt(self, der: bytes) -> bytes:
        """Decrypt EnvelopedData DER with whichever imported key matches."""
        out = self.db / f"{_stamp()}-dec"
        run(["cmsutil", "-D", "-d", self.dbspec, "-i", self._file("env.der", der), "-o", out])
        return out.read_bytes()

    def verify_detached(self, signature_der: bytes, data: bytes) -> Verified:
        """Good means signer0.status=GoodSignature (cmsutil -h exits 0 even on bad ones)."""
        proc = run([
            "cmsutil", "-D", "-d", self.dbspec, "-i", self._file("p.sig", signature_der),
            "-c", self._file("part", data), "-n", "-u", "4", "-h", "2",
        ], check=False)
        status = proc.stdout.decode(errors="replace")
        good = proc.returncode == 0 and "signer0.status=GoodSignature;" in status
        return Verified(good=good, content=data, detail=status + proc.stderr.decode(errors="replace"))


# ---------------------------------------------------------------------------------------------
# s-nail


class SNail:
    """s-nail 14.9 as a mail user agent that builds and reads whole S/MIME messages."""

    BASE = ("s-nail", "-:/", "-Sv15-compat")

    def __init__(self, pki: Pki, folder: Path) -> None:
        self.pki = pki
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def send_signed_encrypted(
        self, text: bytes, sender: Party, recipient: Party, subject: str = "interop"
    ) -> bytes:
        """The message s-nail hands to its MTA: text signed by sender, encrypted to recipient."""
        mbox = self.folder / f"{_stamp()}-out.mbox"
        run([
            *self.BASE, f"-Smta=test://{mbox}", "-r", sender.email,
            "-Ssmime-sign", f"-Ssmime-sign-cert={sender.keycert}", "-Ssmime-sign-digest=sha256",
            f"-Ssmime-encrypt-{recipient.email}={recipient.crt}", "-Ssmime-cipher=aes256",
            "-s", subject, recipient.email,
        ], input=text)
        return first_mbox_message(mbox.read_bytes())

    def decrypt(self, message: bytes, recipient: Party) -> bytes:
        """The message with its pkcs7-mime body replaced by the decrypted entity."""
        inbox = self.folder / f"{_stamp()}-in.mbox"
        inbox.write_bytes(mbox_from([message]))
        out = self.folder / f"{_stamp()}-dec.mbox"
        proc = run([
            *self.BASE, "-#", f"-Ssmime-ca-file={self.pki.ca_crt}",
            f"-Ssmime-sign-cert-{recipient.email}={recipient.keycert}",
            "-Y", f"decrypt 1 {out}", "-Y", "echo status=$?", "-Y", "xit", "-f", inbox,
        ])
        if b"status=0" not in proc.stdout or not out.exists():
            raise ClientError(f"s-nail decrypt failed: {proc.stdout!r} {proc.stderr!r}")
        return first_mbox_message(out.read_bytes())

    def verify(self, message: bytes) -> Verified:
        """s-nail's ``verify`` of a signed message; good means status 0 and its success line."""
        inbox = self.folder / f"{_stamp()}-signed.mbox"
        inbox.write_bytes(mbox_from([message]))
        proc = run([
            *self.BASE, "-#", f"-Ssmime-ca-file={self.pki.ca_crt}", "-Ssmime-ca-no-defaults",
            "-Y", "verify 1", "-Y", "echo status=$?", "-Y", "xit", "-f", inbox,
        ])
        out = proc.stdout.decode(errors="replace")
        good = "status=0" in out and "verified successfully" in out
        return Verified(good=good, content=message, detail=out + proc.stderr.decode(errors="replace"))


def tamper(data: bytes, old: bytes = b"crossed", new: bytes = b"crosses") -> bytes:
    """Change one word of the signed text (it must occur exactly once) to break a signature."""
    assert data.count(old) == 1, f"{old!r} occurs {data.count(old)} times"
    return data.replace(old, new)
