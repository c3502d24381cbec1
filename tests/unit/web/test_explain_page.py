"""The Explain page, POST /api/v1/explain and `smimegate policy explain`: one answer
(smimegate.service.explain, held to the gateway by tests/milter/test_explain_agrees.py),
readable by an auditor, changing nothing, bad input beside its field."""

from __future__ import annotations

import json
import re

import pytest
from cryptography.hazmat.primitives import hashes

from smimegate.cli.main import main
from smimegate.service import explain
from smimegate.store.accounts import accounts_of
from tests.helpers.testpki import TestCA
from tests.unit.web.conftest import Site, sign_in

CAROL, DAVE = "carol@partner.test", "dave@partner.test"
QUESTION = {"sender": "bob@example.com", "recipients": [CAROL, DAVE], "subject": "hello"}


@pytest.fixture()
def carol(site: Site) -> str:
    """carol has a trusted certificate; returns its serial as the answer spells it."""
    ca = TestCA()
    site.store.add_root(ca.cert)
    cert = ca.issue(CAROL).cert
    site.store.add_certificate(cert)
    return format(cert.serial_number, "X")


@pytest.fixture()
def bob_keys(site: Site) -> tuple[str, str]:
    """bob (the sender) holds a trusted signing key and a blocked one; their serials."""
    ca = TestCA()
    site.store.add_root(ca.cert)
    good, blocked = ca.issue("bob@example.com"), ca.issue("bob@example.com")
    for identity in (good, blocked):
        site.store.add_certificate(identity.cert, key=identity.key)
    site.store.set_certificate_blocked(blocked.cert.fingerprint(hashes.SHA256()).hex(), True)
    return format(good.cert.serial_number, "X"), format(blocked.cert.serial_number, "X")


def changes(site: Site) -> tuple[object, ...]:
    """What a read must leave alone: the audit log, the certificates, the settings."""
    return (accounts_of(site.store).audit(limit=1000),
            [c.fingerprint for c in site.store.list_certificates()], site.store.settings())


def test_the_page_answers_an_auditor_and_changes_nothing(site: Site, carol: str,
                                                         bob_keys: tuple[str, str]) -> None:
    client = site.client()
    sign_in(client, "otto")
    before = changes(site)
    page = client.get("/explain", params={"sender": "bob@example.com",
                                          "recipients": f"{CAROL}\n{DAVE}",
                                          "subject": "[encrypt] q3"})
    assert page.status_code == 200
    html = page.text
    assert 'href="/explain" aria-current="page"' in html
    assert "refused: 550 5.7.1 &lt;dave@partner.test&gt;" in html  # the trigger, no cert
    assert f"serial {carol}" in html and "used" in html
    assert "encrypt_mode" in html and ">default<" in html
    assert changes(site) == before
    # The sender's signing keys, each with whether it signs.
    good, blocked = bob_keys
    keys = html.split('id="signing-keys"', 1)[1].split("</ul>", 1)[0]
    assert re.search(rf"used \(classic\):\s+[^<]*serial {good}", keys)
    assert re.search(rf"not used \(classic\):\s+[^<]*serial {blocked}[^<]*<span "
                     r'class="why">— blocked in the store', keys)
    # The empty form: no answer yet, no error.
    empty = client.get("/explain")
    assert empty.status_code == 200 and 'id="answer"' not in empty.text


def test_bad_input_is_shown_beside_its_field(site: Site) -> None:
    client = site.client()
    sign_in(client, "alice")
    page = client.get("/explain", params={"sender": "bob@example.com",
                                          "recipients": "not-an-address"})
    assert page.status_code == 400
    assert 'id="e-recipients" role="alert">recipient' in page.text
    page = client.get("/explain", params={"sender": "", "recipients": CAROL})
    assert page.status_code == 400 and 'id="e-sender"' in page.text


def test_the_page_needs_a_session(site: Site) -> None:
    answer = site.client().get("/explain", params={"sender": "bob@example.com",
                                                   "recipients": CAROL})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"


def test_api_explain_for_both_roles(site: Site, carol: str) -> None:
    for token in (site.admin_token, site.auditor_token):
        answer = site.api(token).post("/api/v1/explain", json=QUESTION)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body == explain.explain(site.store, site.app_config, explain.question(
            "bob@example.com", [CAROL, DAVE], "hello"))
        carol_answer = body["recipients"][0]
        assert carol_answer["action"] == "encrypt"
        assert [c["serial"] for c in carol_answer["certificates"] if c["used"]] == [carol]
        assert body["recipients"][1]["action"] == "clear"
    assert site.api().post("/api/v1/explain", json=QUESTION).status_code == 401
    bad = site.api(site.admin_token).post("/api/v1/explain", json={"sender": "bob@example.com",
                                                                   "recipients": "x"})
    assert bad.status_code == 400 and bad.json()["field"] == "recipients"
    bad = site.api(site.auditor_token).post("/api/v1/explain", json=[1])
    assert bad.status_code == 400 and bad.json()["field"] == "sender"
    paths = site.api().get("/api/v1/openapi.json").json()["paths"]
    assert "post" in paths["/api/v1/explain"]


def test_cli_policy_explain(site: Site, carol: str, bob_keys: tuple[str, str],
                            capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    argv = ["-c", str(site.config_path), "policy", "explain", "bob@example.com", CAROL, DAVE]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["recipients"][0]["action"] == "encrypt"
    assert main([*argv, "--subject", "[encrypt] q3"]) == 0
    text = capsys.readouterr().out
    assert "refused: 550 5.7.1 <dave@partner.test>" in text
    assert f"serial {carol}: used" in text
    good, blocked = bob_keys
    assert re.search(rf"\n +signing key classic .* serial {good}: used\n", text)
    assert re.search(rf"\n +signing key classic .* serial {blocked}: not used: blocked in the "
                     r"store\n", text)
    assert "copy:" not in text  # refused: nothing is delivered
    assert re.search(r"\n +encrypt_mode +allow +\(default\)\n", text)
    assert main([*argv[:4], "bob@example.com", "not an address"]) == 2
    assert "recipient 'not an address'" in capsys.readouterr().err
