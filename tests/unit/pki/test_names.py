"""Names: what our CA writes reads in the usual X.509 order, and every listing shows known
attributes by name (emailAddress, GN, SN ...), the same text as `openssl x509 -nameopt
RFC2253` prints (ours has ", " between attributes, CONTRACT.md) and as the result headers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cryptography import x509

from smimegate.smime.cms import name_to_str, to_asn1
from tests.unit.pki.ca_support import openssl
from tests.unit.pki.test_ca_cli import Cli, cli, cli_for, config, create_ca  # noqa: F401

ORG = "Example Org"


def rfc2253(path: Path, which: str = "-subject") -> str:
    out = openssl("x509", "-in", path, "-noout", which, "-nameopt", "RFC2253").stdout.strip()
    return out.split("=", 1)[1]


def ours_as_openssl(text: str) -> str:
    return text.replace(", ", ",")


def test_issued_names_read_root_down_and_match_openssl(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    rc, _, err = cli("ca", "create", "--root-cn", "Names Root", "--intermediate-cn", "Names CA",
                     "--org", ORG, "--email", "ca@example.org", "--key-type", "ec-p256")
    assert rc == 0, err
    rc, out, err = cli("cert", "issue", "alice@example.org", "--key-type", "ec-p256",
                       "--org", ORG, "--cn", "Alice Doe", "--given-name", "Alice",
                       "--surname", "Doe")
    assert rc == 0, err
    rc, out, err = cli("cert", "list", "--email", "alice@example.org", "--json")
    assert rc == 0, err
    [item] = json.loads(out)
    pem = tmp_path / "alice.pem"
    assert cli("cert", "export", item["fingerprint"], "--out", str(pem))[0] == 0

    # openssl's default one-line form goes from the root of the name down.
    oneline = openssl("x509", "-in", pem, "-noout", "-subject").stdout.strip()
    assert oneline == ("subject=O = Example Org, CN = Alice Doe, GN = Alice, SN = Doe, "
                       "emailAddress = alice@example.org")
    issuer_line = openssl("x509", "-in", pem, "-noout", "-issuer").stdout.strip()
    assert issuer_line == "issuer=O = Example Org, CN = Names CA, emailAddress = ca@example.org"

    # Our RFC 4514 strings: most specific first, names not OIDs, as openssl's RFC 2253 form.
    assert item["subject"] == ("emailAddress=alice@example.org, SN=Doe, GN=Alice, CN=Alice Doe, "
                               "O=Example Org")
    assert ours_as_openssl(item["subject"]) == rfc2253(pem)
    assert ours_as_openssl(item["issuer"]) == rfc2253(pem, "-issuer")
    # The header's issuer DN (Signer-ID, Encryption-Recipient) is the same text.
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    assert name_to_str(to_asn1(cert).issuer) == item["issuer"]

    rc, shown, err = cli("cert", "show", item["fingerprint"])
    assert rc == 0, err
    assert f"subject:      {item['subject']}" in shown
    listings = [shown, out]
    for argv in (("cert", "list"), ("cert", "list", "--json"), ("root", "list"),
                 ("root", "list", "--json"), ("ca", "list"), ("crl", "list"),
                 ("crl", "list", "--json")):
        rc, text, err = cli(*argv)
        assert rc == 0, (argv, err)
        listings.append(text)
    for text in listings:
        assert "1.2.840.113549.1.9.1" not in text and "2.5.4." not in text, text
    assert any("emailAddress=ca@example.org, CN=Names CA, O=Example Org" in t for t in listings)


def test_imported_openssl_names_are_shown_by_name(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    key, pem = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(pem), "-days", "30", "-subj",
         "/C=DE/ST=Berlin/L=Berlin/O=Other Org/OU=Mail/CN=Bob Smith/title=Dr"
         "/serialNumber=4711/emailAddress=bob@other.example"],
        check=True, capture_output=True, timeout=60)
    rc, out, err = cli("cert", "import", str(pem))
    assert rc == 0, err
    rc, out, err = cli("cert", "list", "--json")
    assert rc == 0, err
    [item] = json.loads(out)
    assert item["subject"] == ("emailAddress=bob@other.example, serialNumber=4711, title=Dr, "
                               "CN=Bob Smith, OU=Mail, O=Other Org, L=Berlin, ST=Berlin, C=DE")
    assert ours_as_openssl(item["subject"]) == rfc2253(pem)
    assert item["emails"] == ["bob@other.example"]


def test_store_finds_issuers_by_the_new_strings(cli: Cli) -> None:  # noqa: F811
    """cert revoke looks the certificate up by issuer text and serial: works with names that
    hold emailAddress."""
    create_ca(cli, "Revoking CA", "--email", "ca@example.com")
    rc, out, err = cli("cert", "issue", "carol@example.com", "--key-type", "ec-p256")
    assert rc == 0, err
    serial = next(line.split()[-1] for line in out.splitlines() if "serial:" in line)
    rc, out, err = cli("cert", "revoke", serial)
    assert rc == 0 and "1 revoked" in out, err

