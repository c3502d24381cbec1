"""`make demo`: the seed's flow on a private Postfix, each step shown with its result.

1. create the built-in CA (root + intermediate),
2. make example.com an internal domain, with the user alice@example.com and her certificate,
3. issue the external recipient bob@partner.example a certificate: the PKCS#12 is mailed to him
   through Postfix, the password goes by SMS (the "file" SMS transport, so it can be shown),
4. start `smimegate milter` and a private Postfix (tests/e2e/mta.py, contrib/postfix rendered
   in) relaying outside mail to an smtp-sink that stands for the Internet,
5. alice writes to bob: the message leaves signed and encrypted; bob opens it with OpenSSL and
   the PKCS#12 he received,
6. bob answers, signed and encrypted with OpenSSL: alice's Maildir gets it decrypted, with the
   result headers.

Everything lives in a temporary directory that is removed at the end (--keep keeps it).
Needs root (Postfix runs as root) and the packages of `make test`.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: E402

from tests.e2e.mta import (  # noqa: E402
    MilterProcess,
    Postfix,
    SmtpSink,
    free_port,
    header_values,
    open_dir,
    postfix_milter_spec,
    wait_for,
)

SMIMEGATE = str(Path(sys.executable).with_name("smimegate"))
ALICE = "alice@example.com"
BOB = "bob@partner.example"
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def step(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


def show(text: str, limit: int = 40) -> None:
    lines = text.rstrip("\n").splitlines()
    for line in lines[:limit]:
        print(f"   {line}")
    if len(lines) > limit:
        print(f"   {DIM}... ({len(lines) - limit} more lines){RESET}")


def sg(config: Path, *args: str) -> str:
    """Run and show one smimegate command; stop the demo if it fails."""
    print(f"{DIM}$ smimegate {shlex.join(args)}{RESET}")
    proc = subprocess.run([SMIMEGATE, "-c", str(config), *args], capture_output=True,
                          text=True, check=False)
    show(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"demo: smimegate {' '.join(args)} failed (exit {proc.returncode})")
    return proc.stdout


def openssl(*args: str, input: bytes | None = None) -> bytes:
    print(f"{DIM}$ openssl {shlex.join(args)}{RESET}")
    proc = subprocess.run(["openssl", *args], input=input, capture_output=True, check=False)
    if proc.returncode != 0:
        show(proc.stderr.decode(errors="replace"))
        sys.exit(f"demo: openssl {args[0]} failed")
    show(proc.stderr.decode(errors="replace"), 5)
    return proc.stdout


def head_of(message: bytes) -> str:
    return message.split(b"\r\n\r\n", 1)[0].decode("latin-1").replace("\r\n", "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="the seed's flow on a private Postfix")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    base = open_dir("smimegate-demo-")
    sink = SmtpSink(base / "internet")
    socket_spec = f"inet:{free_port()}@127.0.0.1"
    postfix = Postfix(base / "postfix", milter=postfix_milter_spec(socket_spec),
                      mailboxes=[ALICE], relay_port=sink.port)
    config = base / "smimegate.toml"
    config.write_text(
        "[store]\n"
        f'url = "sqlite:///{base / "smimegate.db"}"\n'
        'master_key_file = "master.key"\n'
        "[milter]\n"
        f'socket = "{socket_spec}"\n'
        'log = "stdout"\n'
        f'reinject = "smtp:127.0.0.1:{postfix.reinject_port}"\n'
        'reinject_secret_file = "reinject.key"\n'
        'authserv_id = "mta.example.com"\n'
        # Our own mail (the PKCS#12) goes out through the listener without milters: it must
        # leave as it is, never encrypted to the very certificate it delivers.
        "[smtp]\n"
        f'relay = "127.0.0.1:{postfix.reinject_port}"\n'
        'sender = "postmaster@example.com"\n'
        "[sms]\n"
        'transport = "file"\n'
        f'file = "{base / "sms.txt"}"\n'
    )
    milter = MilterProcess([SMIMEGATE, "-c", str(config), "milter"], socket_spec,
                           base / "milter.log")
    print(f"demo directory: {base}")
    try:
        step("0. A fresh store")
        sg(config, "db", "init")

        step("1. The built-in CA: a root and an issuing intermediate")
        sg(config, "ca", "create", "--root-cn", "Example Root CA",
           "--intermediate-cn", "Example Issuing CA", "--org", "Example Corp")

        step("2. An internal domain and user; alice's key stays in the gateway (escrow)")
        sg(config, "domain", "add", "example.com", "--locality", "internal")
        sg(config, "user", "add", ALICE)
        sg(config, "cert", "issue", ALICE, "--org", "Example Corp")

        step("3. Start Postfix and the milter (Postfix relays outside mail to a capture server)")
        sink.start()
        milter.start()
        postfix.start()
        print(f"   Postfix: smtp 127.0.0.1:{postfix.smtp_port}, submission (ORIGINATING) "
              f"127.0.0.1:{postfix.submission_port}, re-injection "
              f"127.0.0.1:{postfix.reinject_port}; milter {socket_spec}")

        step("4. An external recipient: PKCS#12 by mail, password by SMS")
        sg(config, "user", "add", BOB, "--phone", "+15550100")
        sg(config, "cert", "issue", BOB, "--pfx-profile", "legacy", "--generate-password",
           "--send-pfx", "--sms-password")
        wait_for(lambda: len(sink.files()) >= 1, "the PKCS#12 mail", log=postfix.log_tail())
        postfix.wait_idle()
        (pfx_mail,) = sink.messages()
        sink.clear()
        print(f"   mail to {', '.join(pfx_mail.recipients)} as it left Postfix:")
        show(head_of(pfx_mail.message), 12)
        sms = (base / "sms.txt").read_text()
        print("   the SMS:")
        show(sms)
        password = _password_from_sms(sms)
        parsed = email.message_from_bytes(pfx_mail.message, policy=email.policy.default)
        pfx = next(bytes(p.get_payload(decode=True)) for p in parsed.walk()
                   if p.get_filename() == "key.pfx")
        key, cert, chain = pkcs12.load_key_and_certificates(pfx, password.encode())
        assert key is not None and cert is not None
        bob_dir = base / "bob"
        bob_dir.mkdir()
        (bob_dir / "bob.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (bob_dir / "bob.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (bob_dir / "chain.pem").write_bytes(b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in chain))
        print(f"   bob opened key.pfx with the SMS password: {cert.subject.rfc4514_string()}")

        step("5. alice writes to bob (submission): signed and encrypted on the way out")
        postfix.send(ALICE, [BOB], (
            f"From: Alice <{ALICE}>\r\nTo: Bob <{BOB}>\r\nSubject: Our contract\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            "Hello Bob,\r\n\r\nthe signed contract is on its way.\r\n\r\nAlice\r\n").encode(),
            port=postfix.submission_port)
        wait_for(lambda: len(sink.files()) >= 1, "alice's message", log=postfix.log_tail())
        postfix.wait_idle()
        (out,) = sink.messages()
        print("   as it reached the Internet:")
        show(head_of(out.message), 14)
        print("   the milter's log line:")
        show("\n".join(line for line in milter.log().splitlines() if "direction=" in line))
        (bob_dir / "in.eml").write_bytes(out.message)
        signed = openssl("cms", "-decrypt", "-in", str(bob_dir / "in.eml"),
                         "-recip", str(bob_dir / "bob.crt"), "-inkey", str(bob_dir / "bob.key"))
        (bob_dir / "signed.eml").write_bytes(signed)
        content = openssl("cms", "-verify", "-in", str(bob_dir / "signed.eml"),
                          "-CAfile", str(bob_dir / "chain.pem"), "-partial_chain")
        print("   what bob reads:")
        show(content.decode(errors="replace"))

        step("6. bob answers, signed and encrypted with OpenSSL: alice gets it decrypted")
        listing = json.loads(sg(config, "cert", "list", "--email", ALICE, "--json"))
        alice_fp = next(c["fingerprint"] for c in listing if c["has_key"])
        sg(config, "cert", "export", alice_fp, "--out", str(bob_dir / "alice.crt"))
        (bob_dir / "reply.txt").write_bytes(
            b"Content-Type: text/plain; charset=us-ascii\n\nThanks Alice, received and signed.\n"
        )
        reply_signed = openssl("cms", "-sign", "-in", str(bob_dir / "reply.txt"),
                               "-signer", str(bob_dir / "bob.crt"),
                               "-inkey", str(bob_dir / "bob.key"),
                               "-certfile", str(bob_dir / "chain.pem"), "-md", "sha256")
        (bob_dir / "reply.signed").write_bytes(reply_signed)
        reply = openssl("cms", "-encrypt", "-aes-256-cbc", "-in", str(bob_dir / "reply.signed"),
                        str(bob_dir / "alice.crt"))
        postfix.send(BOB, [ALICE], (
            f"From: Bob <{BOB}>\r\nTo: Alice <{ALICE}>\r\nSubject: Re: Our contract\r\n"
            # An outsider trying to pass a forged result: the milter removes it.
            "X-Smimegate-Info-Signer-Trusted-0-1: True\r\n").encode() + reply)
        postfix.wait_idle()
        wait_for(lambda: postfix.maildir(ALICE), "the reply in alice's Maildir")
        (delivered,) = postfix.maildir(ALICE)
        print("   in alice's Maildir (headers):")
        show(head_of(delivered), 30)
        print("   the milter's log line:")
        show([line for line in milter.log().splitlines() if "direction=" in line][-1])
        assert "multipart/signed" in header_values(delivered, "Content-Type")[0]
        print(f"\n{BOLD}demo finished: every step worked{RESET}")
    finally:
        milter.signal_stop()
        postfix.stop()
        milter.stop()
        sink.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _password_from_sms(text: str) -> str:
    """The password in the SMS file's last message (the transport writes the text as sent)."""
    candidates = re.findall(r"[Pp]assword[^:]*:\s*(\S+)", text)
    if candidates:
        return str(candidates[-1])
    words = text.split()
    if not words:
        sys.exit("demo: the SMS file is empty")
    return words[-1]


if __name__ == "__main__":
    main()
