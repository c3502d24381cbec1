"""The Certificates tab: the list with trust and the reason, one certificate with its trust
path, import (PEM, DER, PKCS#7, PKCS#12 upload), issue (every ``cert issue`` option), export
(PEM, DER, PKCS#12 after re-authentication, never to auditors), revoke (confirmed). Every
change goes through smimegate.service.certificates, which the CLI calls too."""

from __future__ import annotations

import functools
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from smimegate.pki.ca import DEFAULT_DAYS
from smimegate.pki.crl import DEFAULT_NEXT_UPDATE_DAYS, REASONS
from smimegate.pki.passwords import generate_password
from smimegate.pki.pkcs12 import DEFAULT_PROFILE, PROFILES
from smimegate.pki.signing import ISSUE_KEY_TYPES, SIGNATURE_ALGORITHMS
from smimegate.service import certificates as cert_service
from smimegate.service.certificates import FORMATS, normal_fingerprint
from smimegate.service.errors import InvalidInput, OperationFailed
from smimegate.web import views
from smimegate.web.pages.base import (
    MAX_UPLOAD,
    Page,
    confirmed,
    download,
    form_field,
    listing,
    make_form,
    page,
    unplaced,
)
from smimegate.web.reauth import require_reauth


def certificates(current: Page) -> Response:
    """GET: the list and the forms; POST action=import|issue|revoke."""
    error: InvalidInput | None = None
    notice, problem, status = "", "", 200
    if current.request.method == "POST":
        action = current.form.get("action", "")
        try:
            if action == "import":
                notice, problem = _import(current)
            elif action == "issue":
                done = _issue(current)
                if isinstance(done, Response):
                    return done
                notice = done
            elif action == "revoke":
                asked = confirmed(current, f"Revoke serial {current.form.get('serial', '')} "
                                  "and issue a new CRL?", "Revoke", "/certificates")
                if asked is not None:
                    return asked
                notice = _revoke(current)
            else:
                raise InvalidInput(f"unknown action {action!r}", "action")
            current.form = {} if not problem else current.form
        except InvalidInput as exc:
            error, status = exc, 400
    rows = [{**item, "href": f"/certificates/{item['fingerprint']}",
             "emails": ", ".join(item["emails"]) or "-", "not_after": item["not_after"][:10],
             "trust": "trusted" if item["trusted"] else f"not trusted: {item['trust_info']}"}
            for item in views.certificates(current.store, None,
                                              current.web.config.crl.revocation_mode)]
    columns = [("emails", "Email", True), ("subject", "Subject", True),
               ("issuer", "Issuer", True), ("not_after", "Valid until", True),
               ("trust", "Trust", True), ("fingerprint", "SHA-256", False)]
    forms = _forms(current, error)
    return listing(current, "Certificates", rows, columns, "No certificates.", status=status,
                   notice=notice, problem=problem or unplaced(error, forms), forms=forms)


def _forms(current: Page, error: InvalidInput | None) -> list[dict[str, Any]]:
    f = functools.partial(form_field, current, error=error)
    cas = [""] + [c.name for c in current.store.list_cas()]
    return [
        make_form("import", "Import certificates", "/certificates", "Import", [
            f("action", "", "hidden", default="import"),
            f("file", "File (PEM, DER, PKCS#7 or PKCS#12)", "file"),
            f("password", "PKCS#12 password", "password"),
        ], multipart=True),
        make_form("issue", "Issue a certificate", "/certificates", "Issue", [
            f("action", "", "hidden", default="issue"),
            f("email", "Email"), f("ca", "CA (empty: the default)", "select", cas),
            f("days", "Days valid", "number", default=str(DEFAULT_DAYS)),
            f("key_type", "Key type", "select", ISSUE_KEY_TYPES, default="rsa2048"),
            f("signature_algorithm", "Signature algorithm", "select",
              ("", *SIGNATURE_ALGORITHMS)),
            f("cn", "Common name (empty: the email)"), f("org", "Organization"),
            f("given_name", "Given name"), f("surname", "Surname"),
            f("crl_dp", "CRL distribution point URLs (space-separated)"),
            f("password", "PKCS#12 password (empty: no PKCS#12)", "password"),
            f("generate_password", "Generate the PKCS#12 password", "checkbox"),
            f("pfx_profile", "PKCS#12 profile", "select", tuple(PROFILES),
              default=DEFAULT_PROFILE),
            f("send_pfx", "Mail the PKCS#12 to the address", "checkbox"),
            f("sms_password", "Send the password by SMS", "checkbox"),
        ]),
        make_form("revoke", "Revoke a certificate of a built-in CA", "/certificates", "Revoke", [
            f("action", "", "hidden", default="revoke"),
            f("serial", "Serial (hex)"), f("ca", "CA (empty: the default)", "select", cas),
            f("reason", "Reason", "select", ("", *REASONS)),
            f("next_update_days", "Days until the CRL's next update", "number",
              default=str(DEFAULT_NEXT_UPDATE_DAYS)),
        ]),
    ]


def _number(current: Page, name: str, default: int) -> int:
    text = current.form.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or len(text) > 6:
        raise InvalidInput(f"not a number of days: {text!r}", name)
    return int(text)


def _import(current: Page) -> tuple[str, str]:
    upload = current.files.get("file")
    if upload is None:
        raise InvalidInput("choose a file to import", "file")
    name, data = upload
    if len(data) > MAX_UPLOAD:
        raise InvalidInput(f"{name}: larger than {MAX_UPLOAD // 1024} KiB", "file")
    try:
        report = cert_service.import_data(current.store, current.actor, data, name,
                                          current.form.get("password") or None)
    except OperationFailed as exc:
        raise InvalidInput(str(exc), "file") from None
    notice = " ".join([*(i.line() + "." for i in report.items), report.summary() + "."])
    return notice, "; ".join(report.problems())


def _issue(current: Page) -> str | Response:
    form = current.form
    password = form.get("password") or None
    if form.get("generate_password") == "yes":
        if password:
            raise InvalidInput("give a password or have one generated, not both", "password")
        password = generate_password()
    opts = cert_service.IssueOptions(
        email=form.get("email", ""), ca=form.get("ca") or None,
        days=cert_service.check_days(_number(current, "days", DEFAULT_DAYS)),
        key_type=form.get("key_type", "rsa2048"),
        signature_algorithm=form.get("signature_algorithm") or None,
        cn=form.get("cn") or None, org=form.get("org") or None,
        given_name=form.get("given_name") or None, surname=form.get("surname") or None,
        crl_dp=tuple(form.get("crl_dp", "").split()), password=password,
        pfx_profile=form.get("pfx_profile", DEFAULT_PROFILE),
        send_pfx=form.get("send_pfx") == "yes", sms_password=form.get("sms_password") == "yes")
    cert_service.issue_request(opts)  # the CLI's checks before anything is made
    try:
        result = cert_service.issue(current.store, current.web.config, current.actor, opts)
    except OperationFailed as exc:
        raise InvalidInput(str(exc), "ca" if "CA" in str(exc) else "email") from None
    lines = [line.strip() for line in result.lines()]
    lines += [line for line in (result.report.lines() if result.report else ())]
    if result.published is not None:
        lines.append(result.published.line())
    if form.get("generate_password") == "yes" and not opts.sms_password:
        lines.append(f"PKCS#12 password (shown once): {password}")
    if password and not opts.send_pfx:
        lines.append("Download the PKCS#12 with Export on the certificate's page.")
    return " · ".join(lines)


def _revoke(current: Page) -> str:
    serial = cert_service.parse_serial_text(current.form.get("serial", ""))
    record = cert_service.revoke(
        current.store, current.actor, serial, ca=current.form.get("ca") or None,
        reason=cert_service.parse_reason_text(current.form.get("reason")),
        next_update_days=_number(current, "next_update_days", DEFAULT_NEXT_UPDATE_DAYS))
    return (f"Revoked serial {serial:X}; CRL {record.crl_number} of {record.issuer} lists "
            f"{record.entries} revoked.")


_CERT_FACTS = (
    ("fingerprint", "SHA-256"), ("subject", "Subject"), ("issuer", "Issuer"),
    ("serial", "Serial"), ("emails", "Addresses"), ("not_before", "Valid from"),
    ("not_after", "Valid until"), ("ski", "Key identifier"), ("is_ca", "CA"),
    ("has_key", "Private key in escrow"), ("trusted_root", "Trusted root"),
    ("trusted", "Trusted"), ("trust_info", "Why not trusted"), ("source", "Source"),
    ("blocked", "Blocked"),
)


def certificate(current: Page) -> Response:
    """One certificate as ``cert show --json`` describes it, with its stored issuer chain."""
    fingerprint = normal_fingerprint(current.request.path_params["fingerprint"])
    # The same answer as ``cert show --json`` and the API's certificate detail, path included.
    item = cert_service.detail(current.store, fingerprint, current.web.config.crl.revocation_mode)
    facts = []
    for key, label in _CERT_FACTS:
        value = item[key]
        if key == "trust_info" and value is None:
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        facts.append((label, "-" if value is None else value))
    chain = [link["subject"] + (" (trusted root)" if link["trusted_root"] else "")
             for link in item["path"]]
    error = None
    if current.request.method == "POST":
        try:
            return _export(current, item["fingerprint"])
        except InvalidInput as exc:
            error = exc
    f = functools.partial(form_field, current, error=error)
    export_form = make_form("export", "Export", f"/certificates/{item['fingerprint']}",
                            "Export", [
        f("format", "Format", "select", FORMATS, default="pem"),
        f("password", "PKCS#12 password (format pfx)", "password"),
        f("profile", "PKCS#12 profile", "select", tuple(PROFILES), default=DEFAULT_PROFILE),
    ])
    return current.render("certificate.html", 400 if error else 200, title="Certificate",
                          facts=facts, chain=chain, fingerprint=item["fingerprint"],
                          active="/certificates", forms=[export_form],
                          problem=unplaced(error, [export_form]))


def _export(current: Page, fingerprint: str) -> Response:
    """POST: the certificate as PEM or DER, or PKCS#12 with key and chain after the password
    was given again (auditors never reach here: page() refuses their POSTs)."""
    fmt, password = current.form.get("format", "pem"), current.form.get("password") or None
    profile = current.form.get("profile", DEFAULT_PROFILE)
    cert_service.check_export(fmt, password, profile)
    if fmt == "pfx":
        asked = require_reauth(current, "export the private key of this certificate")
        if asked is not None:
            return asked
        password = current.form.get("password") or None
    fp, data = cert_service.export(current.store, current.actor, fingerprint, fmt, password,
                                   profile)
    media = {"pem": "application/pem-certificate-chain", "der": "application/pkix-cert",
             "pfx": "application/pkcs12"}[fmt]
    return download(data, f"{fp[:16]}.{'p12' if fmt == 'pfx' else fmt}", media)


def certificate_pem(current: Page) -> Response:
    """The public certificate (never its key) as a PEM download."""
    fingerprint = normal_fingerprint(current.request.path_params["fingerprint"])
    record = current.store.get_certificate(fingerprint)
    pem = record.certificate().public_bytes(Encoding.PEM)
    return download(pem, f"{record.fingerprint[:16]}.pem", "application/pem-certificate-chain")

ROUTES: list[BaseRoute] = [
    Route("/certificates", page(certificates, uploads=True), methods=["GET", "POST"]),
    Route("/certificates/{fingerprint}.pem", page(certificate_pem)),
    Route("/certificates/{fingerprint}", page(certificate), methods=["GET", "POST"]),
]
