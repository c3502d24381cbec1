"""SMIMEA owner names and record data (RFC 8162), and `smimegate cert smimea`.

The owner name is checked against RFC 8162 3's own example (hugh@example.com) and against
`openssl dgst` as an independent hash; the printed records are read back with ldns-read-zone,
a real DNS master-file parser.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smimegate.pki.smimea import (
    SmimeaError,
    SmimeaRecord,
    association_data,
    owner_name,
    record_matches,
    zone_line,
)
from tests.helpers.x509damage import cert_with_version
from tests.unit.cli.admin_support import Cli, cli  # noqa: F401
from tests.unit.pki import pkibuild

# RFC 8162 3 (and RFC 7929 3, same scheme): the example address hugh@example.com.
RFC_EXAMPLE = "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._smimecert.example.com."


def test_owner_name_is_the_rfc_example() -> None:
    assert owner_name("hugh@example.com") == RFC_EXAMPLE


def test_owner_name_matches_openssl_and_keeps_the_local_part_as_written() -> None:
    for local in ("Hugh", "hugh+tag", "jösé"):
        out = subprocess.run(["openssl", "dgst", "-sha256", "-r"], input=local.encode(),
                             capture_output=True, check=True).stdout.decode()
        expected = out.split()[0][:56]
        assert owner_name(f"{local}@Example.COM") == f"{expected}._smimecert.example.com."
    assert owner_name("Hugh@example.com") != owner_name("hugh@example.com")
    assert owner_name('"hugh"@example.com') == RFC_EXAMPLE
    assert owner_name("a@bücher.example").endswith("._smimecert.xn--bcher-kva.example.")


@pytest.mark.parametrize("bad", ["", "nobody", "@example.com", "hugh@"])
def test_owner_name_rejects_what_is_not_an_address(bad: str) -> None:
    with pytest.raises(SmimeaError, match="not a mail address"):
        owner_name(bad)


def _cert() -> x509.Certificate:
    return pkibuild.ee(pkibuild.root()).cert


def test_association_data_for_each_selector_and_matching_type() -> None:
    cert = _cert()
    der = cert.public_bytes(Encoding.DER)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert association_data(cert, 0, 0) == der
    assert association_data(cert, 1, 0) == spki
    assert association_data(cert, 0, 1) == hashlib.sha256(der).digest()
    assert association_data(cert, 1, 2) == hashlib.sha512(spki).digest()
    for selector in (0, 1):
        for matching in (0, 1, 2):
            record = SmimeaRecord(3, selector, matching, association_data(cert, selector,
                                                                          matching))
            assert record_matches(record, cert)
    assert not record_matches(SmimeaRecord(3, 0, 1, b"\x00" * 32), cert)
    assert not record_matches(SmimeaRecord(3, 7, 0, der), cert)
    with pytest.raises(SmimeaError, match="selector"):
        zone_line("hugh@example.com", cert, selector=2)


def test_cert_smimea_prints_lines_a_dns_parser_reads(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    cli.ok("ca", "create", "--root-cn", "Zone Root", "--intermediate-cn", "Zone CA",
           "--key-type", "ec-p256")
    cli.ok("domain", "add", "example.com", "--locality", "internal")
    cli.ok("cert", "issue", "Hugh@example.com", "--key-type", "ec-p256")
    out = cli.ok("cert", "smimea", "hugh@example.com").out
    lines = [line for line in out.splitlines() if not line.startswith(";")]
    assert len(lines) == 1
    record = cli.store().list_certificates("hugh@example.com")[0]
    cert = record.certificate()
    assert lines[0] == zone_line("hugh@example.com", cert)
    assert lines[0].startswith(RFC_EXAMPLE + " IN SMIMEA 3 0 0 ")

    hashed = cli.ok("cert", "smimea", "hugh@example.com", "--usage", "1", "--selector", "1",
                    "--matching", "1").out
    zone = tmp_path / "example.com.zone"
    zone.write_text("$ORIGIN example.com.\n$TTL 300\n"
                    "@ IN SOA ns. host. 1 3600 600 86400 300\n" + out + hashed,
                    encoding="utf-8")
    parsed = subprocess.run(["ldns-read-zone", "-c", str(zone)], capture_output=True,
                            text=True, check=True).stdout
    rrs = [line.split() for line in parsed.splitlines() if "SMIMEA" in line.split()]
    assert len(rrs) == 2
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    got = {(r[0], r[4], r[5], r[6], "".join(r[7:]).lower()) for r in rrs}
    assert got == {
        (RFC_EXAMPLE, "3", "0", "0", record.der.hex()),
        (RFC_EXAMPLE, "1", "1", "1", hashlib.sha256(spki).hexdigest()),
    }


def test_cert_smimea_refuses_unknown_users_and_bad_fields(cli: Cli) -> None:  # noqa: F811
    result = cli("cert", "smimea", "nobody@example.com")
    assert result.code == 1
    assert "nobody@example.com is not an internal user" in result.err
    cli.ok("ca", "create", "--root-cn", "Zone Root", "--intermediate-cn", "Zone CA",
           "--key-type", "ec-p256")
    cli.ok("cert", "issue", "bob@partner.test", "--key-type", "ec-p256")
    result = cli("cert", "smimea", "bob@partner.test")
    assert result.code == 1
    assert "bob@partner.test is not an internal user (locality external)" in result.err
    result = cli("cert", "smimea", "nobody@example.com", "--selector", "5")
    assert result.code == 2
    assert "invalid choice: 5" in result.err



def test_a_record_whose_certificate_has_an_unknown_version_gives_none() -> None:
    # RDATA from the DNS is anyone's: cryptography's InvalidVersion (a version other than
    # v1-v3) is no ValueError, and it escaped to the message's path.
    from smimegate.pki.smimealookup import SmimeaLookup

    der = pkibuild.ee(pkibuild.root(), "v@example.test").cert.public_bytes(Encoding.DER)
    bad = cert_with_version(der, 0x11)
    assert bad != der
    records = (SmimeaRecord(3, 0, 0, bad), SmimeaRecord(3, 0, 0, der))
    found = SmimeaLookup("x._smimecert.example.test", "secure", records).certificates()
    assert [cert.public_bytes(Encoding.DER) for _usage, cert in found] == [der]
