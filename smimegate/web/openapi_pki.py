"""The OpenAPI paths and schemas of smimegate.web.api_pki and api_ops (certificates, roots,
CRLs, CAs, the queue, the audit log, SMS) and of /metrics; merged by openapi.document()."""

from __future__ import annotations

from typing import Any

from smimegate.pki.crl import REASONS
from smimegate.pki.pkcs12 import PROFILES
from smimegate.pki.signing import ISSUE_KEY_TYPES, KEY_TYPES, SIGNATURE_ALGORITHMS
from smimegate.service import certificates as cert_service
from smimegate.service import paging
from smimegate.service import queues as queue_service
from smimegate.web import api_ops, api_pki
from smimegate.web.openapi import _answer, _param

_S = "#/components/schemas/"
_TEXT = {"type": "string", "maxLength": 1024}
_NULL_TEXT = {"type": ["string", "null"]}
_BOOL = {"type": "boolean"}
_DAYS = {"type": "integer", "minimum": 1, "maximum": 999999}
_FINGERPRINT = {"name": "fingerprint", "in": "path", "required": True,
                "description": "SHA-256 hex (colons allowed) or a unique prefix of 8+ digits",
                "schema": {"type": "string", "maxLength": 100}}
_TOTAL = {"X-Total-Count": {"description": "rows matching before limit and offset",
                            "schema": {"type": "integer"}}}
_REAUTH = {
    "reauth_password": {"type": "string", "maxLength": 128,
                        "description": "the password of the token's account (re-authentication,"
                                       " required)"},
    "reauth_code": {"type": "string", "maxLength": 16,
                    "description": "its TOTP code, for an account with a second factor"},
}
_UPLOAD = {
    "data": {"type": "string", "contentEncoding": "base64", "maxLength": 700000,
             "description": "the file, base64 (RFC 4648); at most 512 KiB decoded"},
    "name": {"type": "string", "maxLength": 255, "description": "the file's name, for messages"},
}
_PEM = "application/pem-certificate-chain"


def _q(name: str, doc: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": doc,
            "schema": schema}


def _listing(search: tuple[str, ...], sort: tuple[str, ...]) -> list[dict[str, Any]]:
    """The query parameters of smimegate.web.api.page."""
    return [
        _q("q", f"a substring (any case) of {', '.join(search)}",
           {"type": "string", "maxLength": paging.MAX_QUERY}),
        _q("sort", "the key to sort by", {"type": "string", "enum": list(sort)}),
        _q("order", "asc (default) or desc", {"type": "string", "enum": ["asc", "desc"]}),
        _q("limit", "at most this many rows (none: all)",
           {"type": "integer", "minimum": 1, "maximum": paging.MAX_LIMIT}),
        _q("offset", "skip this many rows", {"type": "integer", "minimum": 0}),
    ]


def _body(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"required": bool(required), "content": {"application/json": {"schema": {
        "type": "object", "required": list(required), "additionalProperties": False,
        "properties": properties}}}}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": {"$ref": _S + name}}


def _op(summary: str, responses: dict[str, Any], parameters: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    return op


def _certificates() -> dict[str, Any]:
    cert_list = _listing(cert_service.SEARCH_KEYS, cert_service.SORT_KEYS)
    issue = {
        "email": {"type": "string", "maxLength": 320, "examples": ["bob@example.com"]},
        "ca": {"type": "string", "maxLength": 64, "examples": ["Example CA"]},
        "days": _DAYS, "key_type": {"type": "string", "enum": list(ISSUE_KEY_TYPES)},
        "signature_algorithm": {"type": "string", "enum": list(SIGNATURE_ALGORITHMS)},
        "cn": {"type": "string", "maxLength": 64, "examples": ["Bob Example"]},
        "org": {"type": "string", "maxLength": 64, "examples": ["Example Ltd"]},
        "given_name": {"type": "string", "maxLength": 64, "examples": ["Bob"]},
        "surname": {"type": "string", "maxLength": 64, "examples": ["Example"]},
        "crl_dp": {"type": "array", "maxItems": 32, "items": {
            "type": "string", "format": "uri", "examples": ["http://pki.example.com/ca.crl"]}},
        "password": {"type": "string", "maxLength": 128, "examples": ["a PKCS#12 password"],
                     "description": "the PKCS#12's password (needed by send_pfx)"},
        "generate_password": _BOOL,
        "pfx_profile": {"type": "string", "enum": list(PROFILES)},
        "send_pfx": _BOOL, "sms_password": _BOOL,
    }
    return {
        "/api/v1/certificates": {"get": _op(
            "certificates, as `cert list --json`; search, sort and pages on request",
            _answer(_array("Certificate"), "certificates", headers=_TOTAL),
            [_param("email", "query", "only certificates for this address"), *cert_list])},
        "/api/v1/certificates/import": {"post": _op(
            "import a PEM, DER, PKCS#7 or PKCS#12 file (keys and chain), as `cert import`",
            _answer({"$ref": _S + "ImportReport"}, "what was stored; what could not be read"),
            body=_body({**_UPLOAD, "password": {"type": "string", "maxLength": 1024,
                                                "description": "a PKCS#12's password"}},
                       ("data",)))},
        "/api/v1/certificates/issue": {"post": _op(
            "issue a certificate from a built-in CA, as `cert issue` (published to the "
            "directory when [ldap] publish_certificates says so)",
            _answer({"$ref": _S + "Issued"}, "the certificate issued", "201"),
            body=_body(issue, ("email",)))},
        "/api/v1/certificates/{fingerprint}": {"get": _op(
            "one certificate, as `cert show --json`, with its trust, the reason and its path",
            _answer({"$ref": _S + "CertificateDetail"}, "the certificate"), [_FINGERPRINT])},
        "/api/v1/certificates/{fingerprint}/export": {"get": _op(
            "the certificate alone (never its key), PEM or DER",
            _answer({"type": "string"}, "the certificate", media=_PEM),
            [_FINGERPRINT, _q("format", "pem (default) or der",
                              {"type": "string", "enum": ["pem", "der"]})])},
        "/api/v1/certificates/{fingerprint}/pkcs12": {"post": _op(
            "the PKCS#12 with the private key and chain: admin tokens only, with the "
            "account's password again (re-authentication); recorded in the audit log",
            _answer({"type": "string", "format": "binary"}, "the PKCS#12",
                    media="application/pkcs12"),
            [_FINGERPRINT], _body({"password": {"type": "string", "maxLength": 128,
                                                "description": "the PKCS#12's password"},
                                   "profile": {"type": "string", "enum": list(PROFILES)},
                                   **_REAUTH}, ("password", "reauth_password")))},
        "/api/v1/certificates/{fingerprint}/revoke": {"post": _op(
            "revoke a certificate of a built-in CA; a new CRL lists it",
            _answer({"type": "object", "required": ["fingerprint", "serial", "ca", "crl"]},
                    "the certificate's serial, its CA and the new CRL"),
            [_FINGERPRINT], _body({"reason": {"type": "string", "enum": list(REASONS)},
                                   "next_update_days": _DAYS}))},
    }


def _roots_crls_cas() -> dict[str, Any]:
    root_list = _listing(cert_service.SEARCH_KEYS, cert_service.SORT_KEYS)
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "maxLength": 64}}
    return {
        "/api/v1/roots": {
            "get": _op("trusted roots, as `root list --json`",
                       _answer(_array("Certificate"), "roots", headers=_TOTAL), root_list),
            "post": _op("trust the CA certificates of a PEM, DER or PKCS#7 file",
                        _answer({"type": "object", "required": ["trusted", "problems"]},
                                "the roots trusted, the items refused", "201"),
                        body=_body(_UPLOAD, ("data",)))},
        "/api/v1/roots/{fingerprint}": {"delete": _op(
            "stop trusting a root (the certificate stays stored)", _answer(None, "removed"),
            [_FINGERPRINT])},
        "/api/v1/crls": {
            "get": _op("CRLs, as `crl list --json`",
                       _answer(_array("Crl"), "CRLs", headers=_TOTAL),
                       _listing(api_pki.CRL_SEARCH, api_pki.CRL_SORT)),
            "post": _op("a new CRL of a built-in CA, as `crl create`",
                        _answer({"$ref": _S + "Crl"}, "the CRL", "201"),
                        body=_body({"ca": {"type": "string", "maxLength": 64,
                                           "examples": ["Example CA"]},
                                    "revoke": {"type": "array", "maxItems": 1000,
                                               "items": {"type": "string", "maxLength": 100,
                                                         "examples": ["01:AB"]}},
                                    "reason": {"type": "string", "enum": list(REASONS)},
                                    "update_existing": _BOOL, "next_update_days": _DAYS,
                                    "signature_algorithm": {
                                        "type": "string", "enum": list(SIGNATURE_ALGORITHMS)}}))},
        "/api/v1/crls/import": {"post": _op(
            "import the CRLs of a DER, PEM or PEM-bundle file, as `crl import`",
            _answer({"type": "object", "required": ["imported", "problems"]},
                    "the CRLs kept, the items refused", "201"),
            body=_body(_UPLOAD, ("data",)))},
        "/api/v1/crls/fetch": {"post": _op(
            "download the distribution points' CRLs (or urls) now, as `crl fetch`",
            _answer({"type": "object", "required": ["outcomes", "summary", "all_failed"]},
                    "one outcome per URL"),
            body=_body({"urls": {"type": "array", "maxItems": 32,
                                 "items": {"type": "string", "format": "uri"}}}))},
        "/api/v1/cas": {
            "get": _op("the built-in CAs, as `ca list --json`", _answer(_array("Ca"), "CAs")),
            "post": _op("create a CA (root and issuing intermediate), as `ca create`: admin "
                        "tokens only, with the account's password again",
                        _answer({"$ref": _S + "Ca"}, "the CA", "201"),
                        body=_body({"root_cn": {"type": "string", "maxLength": 64,
                                                "examples": ["Example Root"]},
                                    "intermediate_cn": {"type": "string", "maxLength": 64,
                                                        "examples": ["Example Issuing CA"]},
                                    "name": {"type": "string", "maxLength": 64,
                                             "examples": ["Example CA 2"]}, "days": _DAYS,
                                    "key_type": {"type": "string", "enum": list(KEY_TYPES)},
                                    "signature_algorithm": {
                                        "type": "string", "enum": list(SIGNATURE_ALGORITHMS)},
                                    "email": {"type": "string", "maxLength": 128,
                                              "examples": ["pki@example.com"]},
                                    "org": {"type": "string", "maxLength": 64,
                                            "examples": ["Example Ltd"]},
                                    "default": _BOOL, **_REAUTH},
                                   ("root_cn", "intermediate_cn", "reauth_password")))},
        "/api/v1/cas/{name}/chain": {"get": _op(
            "the CA's chain (intermediate, root) as PEM; never a key",
            _answer({"type": "string"}, "the chain", media=_PEM), [name])},
    }


def _operations() -> dict[str, Any]:
    ident = {"name": "id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1}}
    return {
        "/api/v1/queue": {"get": _op(
            "queued deliveries (PKCS#12 mail, SMS), as `queue list --json`",
            _answer(_array("QueueItem"), "items", headers=_TOTAL),
            [_q("status", "only this status",
                {"type": "string", "enum": list(queue_service.STATUSES)}),
             _q("kind", "only this kind", {"type": "string", "enum": list(queue_service.KINDS)}),
             *_listing(api_ops.QUEUE_SEARCH, api_ops.QUEUE_SORT)])},
        "/api/v1/queue/{id}": {"delete": _op(
            "delete an item (claimed first: one being sent is 409)", _answer(None, "deleted"),
            [ident])},
        "/api/v1/queue/{id}/retry": {"post": _op(
            "try an item once now (claimed first: one being sent is 409)",
            _answer({"type": "object", "required": ["id", "kind", "recipient", "sent",
                                                    "error"]}, "how it went"), [ident])},
        "/api/v1/audit": {"get": _op(
            "the audit log, newest first", _answer(_array("AuditEntry"), "entries",
                                                   headers=_TOTAL),
            [_q("q", "a substring of who, what, to what, the detail or the address",
                {"type": "string", "maxLength": paging.MAX_QUERY}),
             _q("limit", "at most this many (default 100)",
                {"type": "integer", "minimum": 1, "maximum": paging.MAX_LIMIT}),
             _q("offset", "skip this many", {"type": "integer", "minimum": 0})])},
        "/api/v1/sms": {"get": _op(
            "the SMS transport's settings (never a secret)",
            _answer({"type": "object", "additionalProperties": {"type": "string"}},
                    "label: value"))},
        "/api/v1/sms/test": {"post": _op(
            "send a test SMS now (not queued); recorded in the audit log",
            _answer({"type": "object", "required": ["phone", "sent"]}, "sent"),
            body=_body({"phone": {"type": "string", "maxLength": 32,
                                  "examples": ["+31201234567"],
                                  "description": "international form, +CC..."}},
                       ("phone",)))},
        "/metrics": {"get": _op(
            "Prometheus text exposition (version 0.0.4); any token, auditors' too",
            {"200": {"description": "the figures", "content": {
                "text/plain; version=0.0.4": {"schema": {"type": "string"}}}},
             "401": {"description": "no or unknown token"},
             "503": {"description": "store unavailable"}})},
    }


def paths() -> dict[str, Any]:
    return {**_certificates(), **_roots_crls_cas(), **_operations()}


_CERT_PROPS = {
    "fingerprint": {"type": "string"}, "emails": {"type": "array", "items": {"type": "string"}},
    "subject": {"type": "string"}, "issuer": {"type": "string"}, "serial": {"type": "string"},
    "not_before": {"type": "string", "format": "date-time"},
    "not_after": {"type": "string", "format": "date-time"}, "has_key": _BOOL,
    "trusted": _BOOL, "trust_info": _NULL_TEXT, "trusted_root": _BOOL, "is_ca": _BOOL,
    "ski": _NULL_TEXT, "source": _NULL_TEXT, "blocked": _BOOL,
}
_CERT_REQUIRED = ["fingerprint", "emails", "subject", "issuer", "serial", "not_before",
                  "not_after", "has_key", "trusted"]
_ISSUER = {"type": "object", "properties": {"subject": {"type": "string"},
                                            "fingerprint": {"type": "string"},
                                            "serial": {"type": "string"},
                                            "not_after": {"type": "string"}}}

SCHEMAS: dict[str, Any] = {
    "Certificate": {"type": "object", "required": _CERT_REQUIRED, "properties": _CERT_PROPS},
    "CertificateDetail": {"type": "object", "required": [*_CERT_REQUIRED, "path"],
                          "properties": {**_CERT_PROPS, "path": {
                              "type": "array", "description": "the stored issuer chain, "
                              "nearest first", "items": {"type": "object", "properties": {
                                  "subject": {"type": "string"},
                                  "fingerprint": {"type": "string"},
                                  "trusted_root": _BOOL}}}}},
    "ImportReport": {"type": "object", "required": ["summary", "problems", "items"],
                     "properties": {"summary": {"type": "string"},
                                    "problems": {"type": "array", "items": {"type": "string"}},
                                    "items": {"type": "array", "items": {
                                        "type": "object", "properties": {
                                            "status": {"type": "string"},
                                            "certificate": {"$ref": _S + "Certificate"}}}}}},
    "Issued": {"type": "object", "required": ["certificate", "ca", "user_created", "delivery",
                                              "published", "password"],
               "properties": {"certificate": {"$ref": _S + "Certificate"},
                              "ca": {"type": "string"}, "user_created": _BOOL,
                              "delivery": {"type": "array", "items": {"type": "string"}},
                              "published": {"type": ["object", "null"]},
                              "password": {"type": ["string", "null"], "description":
                                           "the generated PKCS#12 password, shown once"}}},
    "Crl": {"type": "object", "required": ["issuer", "this_update", "next_update", "number",
                                           "entries", "verified", "source"],
            "properties": {"issuer": {"type": "string"}, "this_update": {"type": "string"},
                           "next_update": _NULL_TEXT, "number": {"type": ["integer", "null"]},
                           "entries": {"type": "integer"},
                           "verified": {"type": ["boolean", "null"]}, "source": _NULL_TEXT,
                           "fingerprint": {"type": "string"}, "ca": _NULL_TEXT}},
    "Ca": {"type": "object", "required": ["name", "default", "key_type", "root", "intermediate"],
           "properties": {"name": {"type": "string"}, "default": _BOOL,
                          "key_type": {"type": "string"},
                          "next_crl_number": {"type": "integer"},
                          "root": _ISSUER, "intermediate": _ISSUER}},
    "QueueItem": {"type": "object", "required": ["id", "kind", "recipient", "status",
                                                 "attempts"],
                  "properties": {"id": {"type": "integer"}, "kind": {"type": "string"},
                                 "recipient": _NULL_TEXT, "status": {"type": "string"},
                                 "attempts": {"type": "integer"}, "next_attempt": _NULL_TEXT,
                                 "last_error": _NULL_TEXT, "created": {"type": "string"}}},
    "AuditEntry": {"type": "object", "required": ["id", "at", "actor", "role", "via", "address",
                                                  "action", "target", "detail"],
                   "properties": {"id": {"type": "integer"},
                                  "at": {"type": "integer", "description": "Unix time"},
                                  **{k: {"type": "string"} for k in (
                                      "actor", "role", "via", "address", "action", "target",
                                      "detail")}}},
}
