"""Decisions for one message. Expected outcomes are written out in the tables, not computed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smimegate.policy.decide import (
    Decision,
    Recipient,
    Sender,
    Treatment,
    decide,
    decide_at_rcpt,
    match_trigger,
)
from smimegate.policy.properties import PolicyError
from smimegate.policy.resolve import EffectivePolicy, resolve

SENDER = "alice@corp.test"


def pol(**values: str) -> EffectivePolicy:
    return resolve(user_values=values)


def internal_sender(authorised: bool = True, key: bool = True, **values: str) -> Sender:
    return Sender(SENDER, pol(locality="internal", **values), authorised, key)


def rcpt(address: str = "bob@ext.test", cert: bool = True, holds_key: bool = False,
         capabilities: tuple[str, ...] = (), **values: str) -> Recipient:
    return Recipient(address, pol(**values), cert, holds_key, capabilities)


def outcome(decision: Decision, index: int = 0) -> str:
    r = decision.recipients[index]
    if r.refused:
        return "refuse"
    return "encrypt" if r.encrypt else "plain"


# ---------------------------------------------------------------------------------------------
# The main table: encrypt_mode x recipient locality x certificate x subject trigger, outbound.
# trigger: "none" = Subject without the trigger, "match" = Subject with it and the trigger
# enabled, "off" = Subject with it but subject_trigger_enabled = no for the sender.
ENCRYPT_TABLE = [
    # mode,        locality,   cert,  trigger, expected
    ("none",      "external", True,  "none",  "plain"),
    ("none",      "external", True,  "match", "refuse"),
    ("none",      "external", True,  "off",   "plain"),
    ("none",      "external", False, "none",  "plain"),
    ("none",      "external", False, "match", "refuse"),
    ("none",      "external", False, "off",   "plain"),
    ("allow",     "external", True,  "none",  "encrypt"),
    ("allow",     "external", True,  "match", "encrypt"),
    ("allow",     "external", True,  "off",   "encrypt"),
    ("allow",     "external", False, "none",  "plain"),
    ("allow",     "external", False, "match", "refuse"),
    ("allow",     "external", False, "off",   "plain"),
    ("mandatory", "external", True,  "none",  "encrypt"),
    ("mandatory", "external", True,  "match", "encrypt"),
    ("mandatory", "external", True,  "off",   "encrypt"),
    ("mandatory", "external", False, "none",  "refuse"),
    ("mandatory", "external", False, "match", "refuse"),
    ("mandatory", "external", False, "off",   "refuse"),
    ("none",      "internal", True,  "none",  "plain"),
    ("none",      "internal", True,  "match", "plain"),
    ("none",      "internal", True,  "off",   "plain"),
    ("none",      "internal", False, "none",  "plain"),
    ("none",      "internal", False, "match", "plain"),
    ("none",      "internal", False, "off",   "plain"),
    ("allow",     "internal", True,  "none",  "plain"),
    ("allow",     "internal", True,  "match", "plain"),
    ("allow",     "internal", True,  "off",   "plain"),
    ("allow",     "internal", False, "none",  "plain"),
    ("allow",     "internal", False, "match", "plain"),
    ("allow",     "internal", False, "off",   "plain"),
    ("mandatory", "internal", True,  "none",  "plain"),
    ("mandatory", "internal", True,  "match", "plain"),
    ("mandatory", "internal", True,  "off",   "plain"),
    ("mandatory", "internal", False, "none",  "plain"),
    ("mandatory", "internal", False, "match", "plain"),
    ("mandatory", "internal", False, "off",   "plain"),
]


@pytest.mark.parametrize(("mode", "locality", "cert", "trigger", "expected"), ENCRYPT_TABLE)
def test_encrypt_table(mode: str, locality: str, cert: bool, trigger: str,
                       expected: str) -> None:
    subject = "Quarterly numbers" if trigger == "none" else "[encrypt] Quarterly numbers"
    sender = internal_sender(subject_trigger_enabled="no" if trigger == "off" else "yes")
    recipient = rcpt("bob@peer.test", cert=cert, encrypt_mode=mode, locality=locality)
    decision = decide(sender, [recipient], subject)
    assert decision.direction == "outbound"
    assert outcome(decision) == expected
    assert decision.trigger_matched is (trigger == "match")
    # The trigger text leaves the Subject only when the trigger was honoured.
    assert decision.subject == ("Quarterly numbers" if trigger == "match" else None)
    if expected == "refuse":
        assert decision.refusal is not None
        assert str(decision.refusal).startswith("550 5.7.1 <bob@peer.test>: ")
        assert decision.groups == ()
    else:
        assert decision.refusal is None
        assert [g.addresses for g in decision.groups] == [("bob@peer.test",)]
    if expected == "encrypt":
        assert decision.recipients[0].cipher == "aes256-cbc"
        assert decision.recipients[0].key_transport == "rsa-pkcs1"
    else:
        assert decision.recipients[0].cipher is None


# S/MIME deny and disabled users, for an external recipient, no trigger.
DENY_TABLE = [
    # sender smime, rcpt smime, rcpt enabled, mode,       cert,  expected
    ("allow",       "deny",     "yes",        "allow",     True,  "plain"),
    ("allow",       "deny",     "yes",        "mandatory", True,  "refuse"),
    ("allow",       "deny",     "yes",        "mandatory", False, "refuse"),
    ("allow",       "deny",     "yes",        "none",      True,  "plain"),
    ("deny",        "allow",    "yes",        "allow",     True,  "plain"),
    ("deny",        "allow",    "yes",        "mandatory", True,  "refuse"),
    ("deny",        "allow",    "yes",        "allow",     False, "plain"),
    ("allow",       "allow",    "no",         "allow",     True,  "plain"),
    ("allow",       "allow",    "no",         "mandatory", True,  "refuse"),
    ("allow",       "allow",    "yes",        "allow",     True,  "encrypt"),
]


@pytest.mark.parametrize(("sender_smime", "rcpt_smime", "enabled", "mode", "cert", "expected"),
                         DENY_TABLE)
def test_smime_deny_and_disabled(sender_smime: str, rcpt_smime: str, enabled: str, mode: str,
                                 cert: bool, expected: str) -> None:
    decision = decide(internal_sender(smime=sender_smime),
                      [rcpt(cert=cert, smime=rcpt_smime, enabled=enabled, encrypt_mode=mode)],
                      "hello")
    assert outcome(decision) == expected


# Direction: sender locality x authorised x recipient locality.
DIRECTION_TABLE = [
    # sender,     authorised, recipient,  direction,  signed
    ("internal", True,  "external", "outbound", True),
    ("internal", True,  "internal", "outbound", True),
    ("internal", False, "external", "relay",    False),   # forged internal From
    ("internal", False, "internal", "inbound",  False),   # forged internal From, to us
    ("external", True,  "external", "relay",    False),   # authorised relay of outside mail
    ("external", True,  "internal", "inbound",  False),
    ("external", False, "internal", "inbound",  False),
    ("external", False, "external", "relay",    False),
]


@pytest.mark.parametrize(("sender_loc", "authorised", "rcpt_loc", "direction", "signed"),
                         DIRECTION_TABLE)
def test_direction_and_forged_from(sender_loc: str, authorised: bool, rcpt_loc: str,
                                   direction: str, signed: bool) -> None:
    sender = Sender(SENDER, pol(locality=sender_loc), authorised, True)
    decision = decide(sender, [rcpt(locality=rcpt_loc, encrypt_mode="mandatory", cert=False)],
                      "[encrypt] x")
    assert decision.direction == direction
    assert decision.sign is signed
    if direction != "outbound":
        # Not ours to send: no encryption, no refusal and the Subject is not touched.
        assert decision.refusal is None
        assert decision.subject is None
        assert decision.trigger_matched is False
        assert not decision.recipients[0].encrypt
    if sender_loc == "internal" and not authorised:
        assert "sender-internal-unauthorised" in decision.reasons


def test_mixed_recipients_outbound_wins_over_inbound() -> None:
    decision = decide(internal_sender(), [rcpt("c@corp.test", locality="internal"), rcpt()], "x")
    assert decision.direction == "outbound"


# Signing: sign property x smime x enabled x key x sign_mode.
SIGN_TABLE = [
    # sign,  smime,  enabled, key,   mode,     signed, sign_mode, reason
    ("yes", "allow", "yes",   True,  "clear",  True,  "clear",   None),
    ("yes", "allow", "yes",   True,  "opaque", True,  "opaque",  None),
    ("yes", "allow", "yes",   False, "clear",  False, None,      "no-signing-key"),
    ("no",  "allow", "yes",   True,  "clear",  False, None,      "sign-no"),
    ("yes", "deny",  "yes",   True,  "clear",  False, None,      "sender-smime-deny"),
    ("yes", "allow", "no",    True,  "clear",  False, None,      "sender-disabled"),
]


@pytest.mark.parametrize(("sign", "smime", "enabled", "key", "mode", "signed", "sign_mode",
                          "reason"), SIGN_TABLE)
def test_signing(sign: str, smime: str, enabled: str, key: bool, mode: str, signed: bool,
                 sign_mode: str | None, reason: str | None) -> None:
    sender = internal_sender(key=key, sign=sign, smime=smime, enabled=enabled, sign_mode=mode)
    decision = decide(sender, [rcpt(cert=False)], "hi")
    assert decision.sign is signed
    assert decision.sign_mode == sign_mode
    if reason is not None:
        assert reason in decision.reasons


# Inbound entitlement: every recipient must be entitled, otherwise split.
def test_inbound_all_entitled_is_one_decrypting_group() -> None:
    decision = decide(
        Sender("x@ext.test", pol(), False, False),
        [rcpt("a@corp.test", locality="internal", holds_key=True),
         rcpt("b@corp.test", locality="internal", holds_key=True)],
        "s",
    )
    assert decision.direction == "inbound"
    assert not decision.split
    assert decision.groups[0].treatment == Treatment(False, None, True)
    assert decision.groups[0].addresses == ("a@corp.test", "b@corp.test")
    assert decision.action(decision.groups[0]) == "decrypt"


INBOUND_TABLE = [
    # locality,  smime,   enabled, holds_key, decrypt, reason
    ("internal", "allow", "yes",   True,      True,    "entitled"),
    ("internal", "allow", "yes",   False,     False,   "no-key"),
    ("internal", "deny",  "yes",   True,      False,   "recipient-smime-deny"),
    ("internal", "allow", "no",    True,      False,   "recipient-disabled"),
    ("external", "allow", "yes",   True,      False,   "external-recipient"),
]


@pytest.mark.parametrize(("locality", "smime", "enabled", "holds_key", "decrypt", "reason"),
                         INBOUND_TABLE)
def test_inbound_entitlement_splits_the_unentitled(locality: str, smime: str, enabled: str,
                                                   holds_key: bool, decrypt: bool,
                                                   reason: str) -> None:
    entitled = rcpt("a@corp.test", locality="internal", holds_key=True)
    other = rcpt("b@corp.test", locality=locality, smime=smime, enabled=enabled,
                 holds_key=holds_key)
    decision = decide(Sender("x@ext.test", pol(), False, False), [entitled, other], "s")
    assert decision.direction == "inbound"
    assert decision.recipients[1].decrypt is decrypt
    assert reason in decision.recipients[1].reasons
    expected_groups = ([("a@corp.test", "b@corp.test")] if decrypt
                       else [("a@corp.test",), ("b@corp.test",)])
    assert [g.addresses for g in decision.groups] == expected_groups
    assert decision.split is (not decrypt)


# Groups and splitting, outbound.
def test_mixed_outbound_recipients_are_grouped_by_treatment_in_envelope_order() -> None:
    recipients = [
        rcpt("plain1@ext.test", cert=False),
        rcpt("cbc1@ext.test"),
        rcpt("internal@corp.test", locality="internal"),
        rcpt("gcm@ext.test", encryption_algorithm="aes128-gcm"),
        rcpt("cbc2@ext.test", key_transport="rsa-oaep"),  # key transport alone: no split
    ]
    decision = decide(internal_sender(), recipients, "hi")
    assert decision.split
    assert [(g.treatment, g.addresses) for g in decision.groups] == [
        (Treatment(False, None, False), ("plain1@ext.test", "internal@corp.test")),
        (Treatment(True, "aes256-cbc", False), ("cbc1@ext.test", "cbc2@ext.test")),
        (Treatment(True, "aes128-gcm", False), ("gcm@ext.test",)),
    ]
    assert [decision.action(g) for g in decision.groups] == ["sign", "sign+encrypt",
                                                             "sign+encrypt"]
    assert decision.recipients[4].key_transport == "rsa-oaep"


def test_one_refused_recipient_refuses_the_message_and_names_it() -> None:
    decision = decide(internal_sender(), [
        rcpt("ok@ext.test"),
        rcpt("must@ext.test", cert=False, encrypt_mode="mandatory"),
    ], "hi")
    assert decision.refusal is not None
    assert str(decision.refusal) == (
        "550 5.7.1 <must@ext.test>: encryption is mandatory for this recipient but no valid "
        "certificate is available; message not sent")
    assert [r.address for r in decision.refused] == ["must@ext.test"]
    assert [g.addresses for g in decision.groups] == [("ok@ext.test",)]


def test_several_refused_recipients_are_all_named() -> None:
    decision = decide(internal_sender(), [
        rcpt("a@ext.test", cert=False), rcpt("b@ext.test", cert=False, encrypt_mode="none"),
        rcpt("c@ext.test"),
    ], "[ENCRYPT] hi")
    assert decision.refusal is not None
    assert decision.refusal.code == "550" and decision.refusal.status == "5.7.1"
    assert decision.refusal.text == (
        "encryption required but not possible for <a@ext.test>, <b@ext.test>; message not sent")
    assert "policy does not allow" in str(decision.recipients[1].refusal)
    assert "asked for encryption in the Subject" in str(decision.recipients[0].refusal)


def test_refusal_reply_stays_within_one_smtp_line() -> None:
    many = [rcpt(f"recipient-number-{i:03}@external.example.test", cert=False,
                 encrypt_mode="mandatory") for i in range(40)]
    decision = decide(internal_sender(), many, "hi")
    assert decision.refusal is not None
    assert len(str(decision.refusal)) <= 512 - 2
    assert "<recipient-number-000@external.example.test> and 39 more" in str(decision.refusal)


# Cipher and key transport: policy set at some level wins; at default, capabilities choose.
CIPHER_TABLE = [
    # policy cipher,  policy transport, capabilities,                        cipher,       kt
    (None,           None,             (),                                   "aes256-cbc", "rsa-pkcs1"),
    (None,           None,             ("aes128-cbc", "aes256-gcm"),         "aes256-gcm", "rsa-pkcs1"),
    (None,           None,             ("aes128-gcm", "aes256-cbc"),         "aes128-gcm", "rsa-pkcs1"),
    (None,           None,             ("aes128-cbc",),                      "aes128-cbc", "rsa-pkcs1"),
    (None,           None,             ("des-ede3-cbc",),                    "aes256-cbc", "rsa-pkcs1"),
    (None,           None,             ("aes256-cbc", "rsa-oaep"),           "aes256-cbc", "rsa-oaep"),
    ("aes256-cbc",   "rsa-pkcs1",      ("aes256-gcm", "rsa-oaep"),           "aes256-cbc", "rsa-pkcs1"),
    ("aes128-gcm",   None,             (),                                   "aes128-gcm", "rsa-pkcs1"),
]


@pytest.mark.parametrize(("cipher", "transport", "caps", "want_cipher", "want_kt"), CIPHER_TABLE)
def test_cipher_choice(cipher: str | None, transport: str | None, caps: tuple[str, ...],
                       want_cipher: str, want_kt: str) -> None:
    values: dict[str, str] = {}
    if cipher is not None:
        values["encryption_algorithm"] = cipher
    if transport is not None:
        values["key_transport"] = transport
    recipient = Recipient("b@ext.test", pol(**values), True, False, caps)
    decision = decide(internal_sender(), [recipient], "hi")
    assert decision.recipients[0].cipher == want_cipher
    assert decision.recipients[0].key_transport == want_kt


def test_cipher_set_globally_counts_as_policy() -> None:
    recipient = Recipient("b@ext.test", resolve(global_values={"encryption_algorithm":
                                                               "aes128-cbc"}), True, False,
                          ("aes256-gcm",))
    assert decide(internal_sender(), [recipient], "x").recipients[0].cipher == "aes128-cbc"


# Subject trigger matching and removal.
TRIGGER_TABLE = [
    # pattern,             subject,                          matched, rewritten
    (r"\[encrypt\]",       "[encrypt] Offer",                True,  "Offer"),
    (r"\[encrypt\]",       "Offer [encrypt]",                True,  "Offer"),
    (r"\[encrypt\]",       "Re: [encrypt] Offer",            True,  "Re: Offer"),
    (r"\[encrypt\]",       "Re: [Encrypt]Offer",             True,  "Re: Offer"),
    (r"\[encrypt\]",       "[encrypt][ENCRYPT] two",         True,  "two"),
    (r"\[encrypt\]",       "[encrypt]",                      True,  ""),
    (r"\[encrypt\]",       "Offer  with   spaces",           False, "Offer  with   spaces"),
    (r"\[encrypt\]",       "encrypt me",                     False, "encrypt me"),
    (r"\[encrypt\]",       "Keep  double  [encrypt]  here",  True,  "Keep  double here"),
    (r"secure:",           "SECURE: pay slip",               True,  "pay slip"),
    (r"\bconfidential\b",  "Confidential report",            True,  "report"),
    (r"\b",                "no zero width",                  False, "no zero width"),
]


@pytest.mark.parametrize(("pattern", "subject", "matched", "rewritten"), TRIGGER_TABLE)
def test_match_trigger(pattern: str, subject: str, matched: bool, rewritten: str) -> None:
    assert match_trigger(pattern, subject) == (matched, rewritten)


def test_folded_subject_is_unfolded_before_matching() -> None:
    decision = decide(internal_sender(), [rcpt()], "Re: a long subject\r\n [encrypt] tail")
    assert decision.trigger_matched
    assert decision.subject == "Re: a long subject tail"


def test_sender_trigger_pattern_is_used() -> None:
    sender = internal_sender(subject_trigger=r"\(secret\)")
    decision = decide(sender, [rcpt(cert=False)], "(SECRET) plan [encrypt]")
    assert decision.trigger_matched
    assert decision.subject == "plan [encrypt]"
    assert decision.recipients[0].refused


def test_no_subject_means_no_trigger() -> None:
    decision = decide(internal_sender(), [rcpt(cert=False)], None)
    assert not decision.trigger_matched and decision.subject is None
    assert outcome(decision) == "plain"


def test_no_recipients_is_an_error() -> None:
    with pytest.raises(PolicyError, match="at least one recipient"):
        decide(internal_sender(), [], "x")


def test_decision_is_frozen() -> None:
    decision = decide(internal_sender(), [rcpt()], "x")
    with pytest.raises(AttributeError):
        decision.sign = False  # type: ignore[misc]
    assert hash(decision.groups) == hash(decide(internal_sender(), [rcpt()], "x").groups)


def test_reasons_say_why() -> None:
    decision = decide(internal_sender(), [
        rcpt("enc@ext.test"), rcpt("plain@ext.test", cert=False),
        rcpt("in@corp.test", locality="internal"),
        rcpt("must@ext.test", encrypt_mode="mandatory"),
    ], "x")
    assert decision.reasons == ("sender-internal-authorised",)
    assert [r.reasons for r in decision.recipients] == [
        ("certificate", "allow"), ("no-certificate",), ("internal-recipient",),
        ("certificate", "mandatory")]


# RCPT time: known facts only; refuses exactly the mandatory recipients that cannot be
# encrypted to, and never anything decide would accept.
RCPT_TABLE = [
    # authorised, rcpt locality, mode,       cert,  smime,   refused
    (True,  "external", "mandatory", False, "allow", True),
    (True,  "external", "mandatory", True,  "allow", False),
    (True,  "external", "mandatory", True,  "deny",  True),
    (True,  "external", "allow",     False, "allow", False),
    (True,  "external", "none",      False, "allow", False),
    (True,  "internal", "mandatory", False, "allow", False),
    (False, "external", "mandatory", False, "allow", False),  # not outbound: not ours to refuse
]


@pytest.mark.parametrize(("authorised", "locality", "mode", "cert", "smime", "refused"),
                         RCPT_TABLE)
def test_decide_at_rcpt(authorised: bool, locality: str, mode: str, cert: bool, smime: str,
                        refused: bool) -> None:
    refusal = decide_at_rcpt(internal_sender(authorised=authorised),
                             rcpt("r@peer.test", cert=cert, locality=locality,
                                  encrypt_mode=mode, smime=smime))
    assert (refusal is not None) is refused
    if refusal is not None:
        assert str(refusal).startswith("550 5.7.1 <r@peer.test>: encryption is mandatory")


@given(
    sender_loc=st.sampled_from(["internal", "external"]),
    authorised=st.booleans(),
    sender_smime=st.sampled_from(["allow", "deny"]),
    trigger=st.booleans(),
    rows=st.lists(st.tuples(st.sampled_from(["internal", "external"]),
                            st.sampled_from(["none", "allow", "mandatory"]),
                            st.sampled_from(["allow", "deny"]),
                            st.sampled_from(["yes", "no"]),
                            st.booleans()), min_size=1, max_size=4),
)
def test_rcpt_time_refusals_agree_with_end_of_message(
    sender_loc: str, authorised: bool, sender_smime: str, trigger: bool,
    rows: list[tuple[str, str, str, str, bool]],
) -> None:
    sender = Sender(SENDER, pol(locality=sender_loc, smime=sender_smime), authorised, True)
    recipients = [rcpt(f"r{i}@peer.test", cert=cert, locality=loc, encrypt_mode=mode,
                       smime=smime, enabled=enabled)
                  for i, (loc, mode, smime, enabled, cert) in enumerate(rows)]
    decision = decide(sender, recipients, "[encrypt] x" if trigger else "x")
    for recipient, result in zip(recipients, decision.recipients, strict=True):
        early = decide_at_rcpt(sender, recipient)
        if early is not None:
            assert result.refusal == early
        if not trigger and result.refusal is not None:
            assert early == result.refusal
        # Never sent in clear when required: refused recipients are in no group.
        assert not (result.refused and any(recipient.address in g.addresses
                                           for g in decision.groups))


# ---------------------------------------------------------------------------------------------
# pqc (issue 14 point 3): which certificates a recipient's copy is encrypted to, and which
# keys sign. classic / pq: the recipient has a trusted classic / ML-KEM certificate.
PQC_ENCRYPT_TABLE = [
    # pqc,     mode,        classic, pq,    expected,  certificates
    ("never",  "allow",     True,    True,  "encrypt", ("classic",)),
    ("never",  "allow",     False,   True,  "plain",   ()),
    ("never",  "mandatory", False,   True,  "refuse",  ()),
    ("prefer", "allow",     True,    True,  "encrypt", ("classic", "ml-kem")),
    ("prefer", "allow",     True,    False, "encrypt", ("classic",)),
    ("prefer", "allow",     False,   True,  "encrypt", ("ml-kem",)),
    ("prefer", "allow",     False,   False, "plain",   ()),
    ("prefer", "mandatory", False,   False, "refuse",  ()),
    ("only",   "allow",     True,    True,  "encrypt", ("ml-kem",)),
    ("only",   "allow",     False,   True,  "encrypt", ("ml-kem",)),
    ("only",   "allow",     True,    False, "plain",   ()),
    ("only",   "mandatory", True,    False, "refuse",  ()),
]


@pytest.mark.parametrize(("pqc", "mode", "classic", "pq", "expected", "certificates"),
                         PQC_ENCRYPT_TABLE)
def test_pqc_chooses_the_certificates_of_a_recipient(
        pqc: str, mode: str, classic: bool, pq: bool, expected: str,
        certificates: tuple[str, ...]) -> None:
    r = Recipient("bob@ext.test", pol(encrypt_mode=mode, pqc=pqc), classic,
                  has_pq_certificate=pq)
    decision = decide(internal_sender(), [r], "hello")
    assert outcome(decision) == expected
    assert decision.recipients[0].certificates == certificates
    # decide_at_rcpt refuses exactly what decide refuses without a trigger.
    assert (decide_at_rcpt(internal_sender(), r) is not None) == (expected == "refuse")


def test_pqc_only_refusal_names_the_missing_ml_kem_certificate() -> None:
    r = Recipient("bob@ext.test", pol(encrypt_mode="mandatory", pqc="only"), True)
    decision = decide(internal_sender(), [r], "hello")
    assert decision.refusal is not None
    assert "<bob@ext.test>" in decision.refusal.text
    assert "ML-KEM" in decision.refusal.text
    assert decision.recipients[0].reasons == ("mandatory", "no-ml-kem-certificate")


PQC_SIGN_TABLE = [
    # pqc,     signature,          classic, ml_dsa, signers,                arrangement
    ("never",  "countersignature", True,    True,   ("classic",),           None),
    ("never",  "countersignature", False,   True,   (),                     None),
    ("prefer", "countersignature", True,    True,   ("classic", "ml-dsa"),  "countersignature"),
    ("prefer", "parallel",         True,    True,   ("classic", "ml-dsa"),  "parallel"),
    ("prefer", "parallel",         True,    False,  ("classic",),           None),
    ("prefer", "parallel",         False,   True,   ("ml-dsa",),            None),
    ("only",   "parallel",         True,    True,   ("ml-dsa",),            None),
    ("only",   "parallel",         True,    False,  (),                     None),
]


@pytest.mark.parametrize(("pqc", "signature", "classic", "ml_dsa", "signers", "arrangement"),
                         PQC_SIGN_TABLE)
def test_pqc_chooses_the_signing_keys(pqc: str, signature: str, classic: bool, ml_dsa: bool,
                                      signers: tuple[str, ...], arrangement: str | None) -> None:
    sender = Sender(SENDER, pol(locality="internal", pqc=pqc, pqc_signature=signature), True,
                    classic, ml_dsa)
    decision = decide(sender, [rcpt()], "hello")
    assert decision.signers == signers
    assert decision.sign == bool(signers)
    assert decision.sign_arrangement == arrangement
    if not signers:
        assert ("no-ml-dsa-key" if pqc == "only" else "no-signing-key") in decision.reasons


def test_pqc_is_inherited_global_domain_user() -> None:
    policy = resolve({"pqc": "prefer"}, {"pqc": "only"}, None)
    assert (policy.value("pqc"), policy.source("pqc")) == ("only", "domain")
    policy = resolve({"pqc": "prefer"}, {"pqc": "only"}, {"pqc": "never"}, {"pqc": "PREFER"})
    assert (policy.value("pqc"), policy.source("pqc")) == ("prefer", "ldap")
    with pytest.raises(PolicyError, match="never, prefer, only"):
        resolve({"pqc": "maybe"})


def test_ml_kem_recipients_get_a_copy_of_their_own() -> None:
    """A classic-only recipient never shares a copy with an ML-KEM RecipientInfo (NSS refuses
    the whole EnvelopedData then); under never nothing splits that did not before."""
    both = Recipient("both@ext.test", pol(pqc="prefer"), True, has_pq_certificate=True)
    classic = Recipient("classic@ext.test", pol(pqc="prefer"), True)
    other = Recipient("other@ext.test", pol(pqc="prefer"), True, has_pq_certificate=True)
    decision = decide(internal_sender(), [classic, both, other], "hello")
    assert [(g.treatment, g.addresses) for g in decision.groups] == [
        (Treatment(True, "aes256-cbc", False, False), ("classic@ext.test",)),
        (Treatment(True, "aes256-cbc", False, True), ("both@ext.test", "other@ext.test")),
    ]
    never = [Recipient(r.address, pol(), True, has_pq_certificate=r.has_pq_certificate)
             for r in (classic, both, other)]
    assert len(decide(internal_sender(), never, "hello").groups) == 1
