"""The REST API's certificates, roots, CRLs and CAs (smimegate.web.api has the mechanics):
the operations of the Certificates, Roots, CRLs and CA tabs and of ``smimegate cert / root /
crl / ca``, through the same service functions (smimegate.service.certificates, roots, crls,
cas), so no store logic is written here.

Private keys and tokens (ASVS 3.7.1 re-authentication). A web session re-authenticates with
the password before a PKCS#12 export or creating a CA; a token has no session to stamp, and a
token is a long-lived secret that ends up in scripts and CI variables. So a token alone never
does either: ``POST /api/v1/certificates/{fingerprint}/pkcs12`` and ``POST /api/v1/cas`` take
``reauth_password`` (and ``reauth_code`` for an account with TOTP) of the token's account in
the body, checked and throttled like a web sign-in (smimegate.service.sessions.
reauthenticate_token), recorded in the audit log with the export itself. A separate token
scope was the other choice; it would still let a stolen token export keys, so it is not
offered. Auditors' tokens get 403 on both before anything is read, and no API call returns a
private key otherwise: an issued certificate's PKCS#12 is mailed (``send_pfx``) or exported
through that endpoint, as on the Certificates tab.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.pki.crl import DEFAULT_NEXT_UPDATE_DAYS
from smimegate.pki.passwords import generate_password
from smimegate.pki.pkcs12 import DEFAULT_PROFILE
from smimegate.service import cas as ca_service
from smimegate.service import certificates as cert_service
from smimegate.service import crls as crl_service
from smimegate.service import roots as root_service
from smimegate.service import sessions
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.store import CertificateRecord, CrlRecord
from smimegate.web.api import Call, endpoint, page
from smimegate.web.security import attachment

PEM = "application/pem-certificate-chain"
CRL_SEARCH = ("issuer", "source", "ca", "fingerprint", "scope")
CRL_SORT = ("issuer", "this_update", "next_update", "number", "entries", "source", "ca")


def _mode(call: Call) -> str:
    return call.web.config.crl.revocation_mode


def _described(call: Call, records: list[CertificateRecord]) -> list[dict[str, Any]]:
    anchors = cert_service.anchors_of(call.web.store, _mode(call))
    return [cert_service.describe(r, anchors) for r in records]


def _file(data: bytes, name: str, media: str) -> Response:
    return Response(data, media_type=media, headers={
        "content-disposition": attachment(name), "cache-control": "no-store"})


def _reauthenticate(call: Call, fields: dict[str, Any]) -> None:
    """The token account's password (and code) again; see the module doc."""
    password = call.text(fields, "reauth_password", required=True, limit=128)
    sessions.reauthenticate_token(call.web.store, call.actor, str(password),
                                  call.text(fields, "reauth_code", limit=16) or "",
                                  call.web.limits)


def _crl_row(call: Call, record: CrlRecord) -> dict[str, Any]:
    """A CRL as ``crl list --json`` shows it (with the built-in CA it belongs to)."""
    rows = crl_service.crl_rows(call.web.store)
    return next((r for r in rows if r["fingerprint"] == record.fingerprint),
                crl_service.describe(record, {}))


# -- certificates -----------------------------------------------------------------------------

def list_certificates(call: Call) -> Any:
    """As ``cert list [--email E] --json``; q, sort, order, limit, offset (api.page)."""
    email = call.query("email", 320).strip().lower() or None
    return page(call, cert_service.listing(call.web.store, email, _mode(call)),
                cert_service.SEARCH_KEYS, cert_service.SORT_KEYS)


def get_certificate(call: Call) -> Any:
    return cert_service.detail(call.web.store, call.param("fingerprint"), _mode(call))


def export_certificate(call: Call) -> Any:
    """The certificate alone, PEM (default) or DER; never its key."""
    fmt = call.query("format", 8) or "pem"
    if fmt not in ("pem", "der"):
        raise InvalidInput(f"bad format {fmt!r}: pem or der (a PKCS#12 is POST .../pkcs12)",
                           "format")
    fingerprint, data = cert_service.export(call.web.store, call.actor,
                                            call.param("fingerprint"), fmt)
    return _file(data, f"{fingerprint[:16]}.{fmt}",
                 PEM if fmt == "pem" else "application/pkix-cert")


def export_pkcs12(call: Call) -> Any:
    """The PKCS#12 (key and chain) after re-authentication; recorded in the audit log."""
    fields = call.fields(("password", "profile", "reauth_password", "reauth_code"))
    password = call.text(fields, "password", required=True, limit=128)
    profile = call.text(fields, "profile", limit=16) or DEFAULT_PROFILE
    cert_service.check_export("pfx", password, profile)
    record = cert_service.record_of(call.web.store, call.param("fingerprint"))  # 404 first
    _reauthenticate(call, fields)
    fingerprint, data = cert_service.export(call.web.store, call.actor, record.fingerprint,
                                            "pfx", password, profile)
    return _file(data, f"{fingerprint[:16]}.p12", "application/pkcs12")


def import_certificates(call: Call) -> Any:
    """A PEM, DER, PKCS#7 or PKCS#12 file as base64; every certificate it holds, with keys."""
    fields = call.fields(("data", "name", "password"))
    data = call.upload(fields)
    name = call.text(fields, "name", limit=255) or "upload"
    try:
        report = cert_service.import_data(call.web.store, call.actor, data, name,
                                          call.text(fields, "password", limit=1024))
    except OperationFailed as exc:  # not readable, a wrong PKCS#12 password
        raise InvalidInput(str(exc), "data") from None
    if not report.items:
        raise InvalidInput("; ".join(report.problems()) or f"{name}: no certificate in it",
                           "data")
    stored = _described(call, [i.record for i in report.items])
    return {"summary": report.summary(), "problems": report.problems(),
            "items": [{"status": i.status, "certificate": c}
                      for i, c in zip(report.items, stored, strict=True)]}


ISSUE_FIELDS = ("email", "ca", "days", "key_type", "signature_algorithm", "cn", "org",
                "given_name", "surname", "crl_dp", "password", "generate_password",
                "pfx_profile", "send_pfx", "sms_password")


def issue_certificate(call: Call) -> Any:
    """Every ``cert issue`` option; the PKCS#12 is mailed (send_pfx) or exported later, never
    in this answer. A generated password is in the answer unless it went by SMS."""
    fields = call.fields(ISSUE_FIELDS)
    password = call.text(fields, "password", limit=128)
    generated = call.flag(fields, "generate_password")
    if generated and password:
        raise InvalidInput("give a password or have one generated, not both", "password")
    if generated:
        password = generate_password()
    text = call.text
    opts = cert_service.IssueOptions(
        email=str(text(fields, "email", required=True, limit=320)),
        ca=text(fields, "ca", limit=64), days=call.number(fields, "days"),
        key_type=text(fields, "key_type", limit=16) or "rsa2048",
        signature_algorithm=text(fields, "signature_algorithm", limit=32),
        cn=text(fields, "cn", limit=64), org=text(fields, "org", limit=64),
        given_name=text(fields, "given_name", limit=64),
        surname=text(fields, "surname", limit=64),
        crl_dp=tuple(call.texts(fields, "crl_dp")), password=password,
        pfx_profile=text(fields, "pfx_profile", limit=16) or DEFAULT_PROFILE,
        send_pfx=call.flag(fields, "send_pfx"), sms_password=call.flag(fields, "sms_password"))
    result = cert_service.issue(call.web.store, call.web.config, call.actor, opts)
    published = result.published
    return {
        "certificate": _described(call, [result.issued.record])[0],
        "ca": result.issued.ca.name,
        "user_created": result.issued.user_created,
        "delivery": result.report.lines() if result.report else [],
        "published": None if published is None else dataclasses.asdict(published),
        "password": password if generated and not opts.sms_password else None,
    }


def revoke_certificate(call: Call) -> Any:
    """Revoke a stored certificate of a built-in CA; a new CRL lists it."""
    fields = call.fields(("reason", "next_update_days"))
    reason = cert_service.parse_reason_text(call.text(fields, "reason", limit=32))
    record, ca, crl = cert_service.revoke_stored(
        call.web.store, call.actor, call.param("fingerprint"), reason=reason,
        next_update_days=call.number(fields, "next_update_days"))
    return {"fingerprint": record.fingerprint, "serial": record.serial, "ca": ca,
            "reason": reason, "crl": _crl_row(call, crl)}


# -- roots ------------------------------------------------------------------------------------

def list_roots(call: Call) -> Any:
    return page(call, root_service.listing(call.web.store, _mode(call)),
                cert_service.SEARCH_KEYS, cert_service.SORT_KEYS)


def add_roots(call: Call) -> Any:
    """Trust every CA certificate of a PEM, DER or PKCS#7 file sent as base64."""
    fields = call.fields(("data", "name"))
    data = call.upload(fields)
    name = call.text(fields, "name", limit=255) or "upload"
    try:
        report = root_service.add_data(call.web.store, call.actor, data, name)
    except OperationFailed as exc:  # not readable, holds a private key
        raise InvalidInput(str(exc), "data") from None
    if not report.trusted:
        raise InvalidInput("; ".join(report.problems) or f"{name}: no certificate in it",
                           "data")
    return {"trusted": _described(call, report.trusted), "problems": report.problems}


def remove_root(call: Call) -> Any:
    root_service.remove(call.web.store, call.actor, call.param("fingerprint"))
    return None


# -- CRLs -------------------------------------------------------------------------------------

def list_crls(call: Call) -> Any:
    return page(call, crl_service.crl_rows(call.web.store), CRL_SEARCH, CRL_SORT)


def create_crl(call: Call) -> Any:
    """``crl create``: a new CRL of a built-in CA, listing every revocation recorded."""
    fields = call.fields(("ca", "revoke", "reason", "update_existing", "next_update_days",
                          "signature_algorithm"))
    try:
        serials = [cert_service.parse_serial_text(s)
                   for s in call.texts(fields, "revoke", most=1000)]
    except InvalidInput as exc:
        raise InvalidInput(str(exc), "revoke") from None
    record = crl_service.create(
        call.web.store, call.actor, call.text(fields, "ca", limit=64), revoke=serials,
        reason=cert_service.parse_reason_text(call.text(fields, "reason", limit=32)),
        update_existing=call.flag(fields, "update_existing"),
        next_update_days=call.number(fields, "next_update_days") or DEFAULT_NEXT_UPDATE_DAYS,
        signature_algorithm=call.text(fields, "signature_algorithm", limit=32))
    return _crl_row(call, record)


def import_crls(call: Call) -> Any:
    """``crl import``: every CRL of a DER, PEM or PEM-bundle file sent as base64."""
    fields = call.fields(("data", "name"))
    data = call.upload(fields)
    done = crl_service.import_data(call.web.store, call.actor, data,
                                   call.text(fields, "name", limit=255) or "upload")
    problems = [f"{d.label}: {d.note}" for d in done if d.record is None]
    kept = [(d, _crl_row(call, d.record)) for d in done if d.record is not None]
    if not kept:
        raise InvalidInput("; ".join(problems) or "no CRL in it", "data")
    return {"imported": [{**row, "note": d.note.strip(" ()")} for d, row in kept],
            "problems": problems}


def fetch_crls(call: Call) -> Any:
    """``crl fetch``: download the distribution points' CRLs (or urls) now."""
    fields = call.fields(("urls",))
    urls = call.texts(fields, "urls")
    report = crl_service.fetch(call.web.store, call.actor, call.web.config.crl.fetch_timeout,
                               urls or None)
    return {"outcomes": [dataclasses.asdict(o) for o in report.outcomes],
            "summary": report.summary() if report.outcomes else "no URLs",
            "all_failed": report.all_failed}


# -- CAs --------------------------------------------------------------------------------------

def list_cas(call: Call) -> Any:
    return ca_service.listing(call.web.store)


def create_ca(call: Call) -> Any:
    """``ca create`` after re-authentication (see the module doc)."""
    fields = call.fields(("root_cn", "intermediate_cn", "name", "days", "key_type",
                          "signature_algorithm", "email", "org", "default", "reauth_password",
                          "reauth_code"))
    text = call.text
    opts = ca_service.CaOptions(
        str(text(fields, "root_cn", required=True, limit=64)),
        str(text(fields, "intermediate_cn", required=True, limit=64)),
        name=text(fields, "name", limit=64), days=call.number(fields, "days"),
        key_type=text(fields, "key_type", limit=16) or "rsa2048",
        signature_algorithm=text(fields, "signature_algorithm", limit=32),
        email=text(fields, "email", limit=128), org=text(fields, "org", limit=64),
        default=call.flag(fields, "default"))
    ca_service.check(opts)  # bad input is refused before the password is checked
    _reauthenticate(call, fields)
    return ca_service.describe(ca_service.create(call.web.store, call.actor, opts))


def ca_chain(call: Call) -> Any:
    """The CA's chain (intermediate, root) as PEM; never a key."""
    name = call.param("name")
    return _file(ca_service.export_chain(call.web.store, name), f"{name}-chain.pem", PEM)


ROUTES: list[BaseRoute] = [
    Route("/api/v1/certificates", endpoint(list_certificates)),
    Route("/api/v1/certificates/import", endpoint(import_certificates), methods=["POST"]),
    Route("/api/v1/certificates/issue", endpoint(issue_certificate, 201), methods=["POST"]),
    Route("/api/v1/certificates/{fingerprint}", endpoint(get_certificate)),
    Route("/api/v1/certificates/{fingerprint}/export", endpoint(export_certificate)),
    Route("/api/v1/certificates/{fingerprint}/pkcs12", endpoint(export_pkcs12),
          methods=["POST"]),
    Route("/api/v1/certificates/{fingerprint}/revoke", endpoint(revoke_certificate),
          methods=["POST"]),
    Route("/api/v1/roots", endpoint(list_roots)),
    Route("/api/v1/roots", endpoint(add_roots, 201), methods=["POST"]),
    Route("/api/v1/roots/{fingerprint}", endpoint(remove_root), methods=["DELETE"]),
    Route("/api/v1/crls", endpoint(list_crls)),
    Route("/api/v1/crls", endpoint(create_crl, 201), methods=["POST"]),
    Route("/api/v1/crls/import", endpoint(import_crls, 201), methods=["POST"]),
    Route("/api/v1/crls/fetch", endpoint(fetch_crls), methods=["POST"]),
    Route("/api/v1/cas", endpoint(list_cas)),
    Route("/api/v1/cas", endpoint(create_ca, 201), methods=["POST"]),
    Route("/api/v1/cas/{name}/chain", endpoint(ca_chain)),
]
