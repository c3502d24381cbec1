"""The OpenAPI 3.1 document of the REST API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from smimegate import __version__
from smimegate.policy import PROPERTIES

_ERROR = {"$ref": "#/components/schemas/Error"}
_POLICY = {"$ref": "#/components/schemas/Policy"}


def _answer(schema: dict[str, Any] | None, what: str, status: str = "",
            media: str = "application/json", headers: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """The responses of an operation: the success (status: 200, or 204 without a schema)
    with schema as media, and every error as an Error object."""
    ok: dict[str, Any] = {"description": what}
    if schema is not None:
        ok["content"] = {media: {"schema": schema}}
    if headers:
        ok["headers"] = headers
    errors = {code: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
              for code, text in (("400", "bad input"), ("401", "no or unknown token"),
                                 ("403", "an auditor's token asked for a change"),
                                 ("404", "no such row"), ("409", "conflict"),
                                 ("429", "too many failed re-authentications"),
                                 ("503", "store unavailable"))}
    return {status or ("200" if schema is not None else "204"): ok, **errors}


def _param(name: str, where: str = "path", doc: str = "") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": doc,
            "schema": {"type": "string", "maxLength": 320}}


_VALUE_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["value"],
    "properties": {"value": {"type": ["string", "boolean"]}}}}}}
_PROPERTY = {"name": "property", "in": "path", "required": True,
             "schema": {"type": "string", "enum": list(PROPERTIES)}}


def _level(path: str, key: str | None, what: str) -> dict[str, Any]:
    params = [_param(key, doc=what)] if key else []
    return {
        path: {"get": {"summary": f"effective properties of {what} and their levels",
                       "parameters": params, "responses": _answer(_POLICY, "as `show --json`")}},
        f"{path}/{{property}}": {
            "put": {"summary": f"set a property of {what}", "parameters": [*params, _PROPERTY],
                    "requestBody": _VALUE_BODY,
                    "responses": _answer(_POLICY, "the effective properties after it")},
            "delete": {"summary": f"drop {what}'s own value (inherit)",
                       "parameters": [*params, _PROPERTY],
                       "responses": _answer(_POLICY, "the effective properties after it")},
        },
    }


def document() -> dict[str, Any]:
    # Imported here: openapi_pki builds on the helpers above.
    from smimegate.web import openapi_pki

    paths: dict[str, Any] = {}
    paths.update(_level("/api/v1/settings", None, "the global settings"))
    paths.update(_level("/api/v1/domains/{domain}", "domain", "a domain rule"))
    paths.update(_level("/api/v1/users/{email}", "email", "a user"))
    paths["/api/v1/domains/{domain}"]["delete"] = {
        "summary": "remove a domain rule", "parameters": [_param("domain")],
        "responses": _answer(None, "removed")}
    paths["/api/v1/users/{email}"]["delete"] = {
        "summary": "remove a user", "parameters": [_param("email")],
        "responses": _answer(None, "removed")}
    paths["/api/v1/domains"] = {
        "get": {"summary": "domain rules, as `domain list --json`",
                "responses": _answer({"type": "array", "items": {"type": "object"}}, "rules")},
        "post": {"summary": "add a domain rule", "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object", "required": ["name"],
                                            "properties": {"name": {"type": "string"},
                                                           "properties": {"type": "object"}}}}}},
                 "responses": _answer({"type": "object"}, "the rule added")}}
    paths["/api/v1/users"] = {
        "get": {"summary": "users, as `user list --json`", "parameters": [
            _param("domain", "query", "only users of this domain")],
                "responses": _answer({"type": "array", "items": {"type": "object"}}, "users")},
        "post": {"summary": "add a user", "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object", "required": ["email"],
                                            "properties": {"email": {"type": "string"},
                                                           "enabled": {"type": "boolean"},
                                                           "properties": {"type": "object"}}}}}},
                 "responses": _answer({"type": "object"}, "the user added")}}
    paths.update(openapi_pki.paths())  # certificates, roots, CRLs, CAs, queue, audit, SMS
    paths["/api/v1/explain"] = {"post": {
        "summary": "what the milter would do with a message (changes nothing; auditors too)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["sender", "recipients"], "properties": {
                "sender": {"type": "string", "maxLength": 320},
                "recipients": {"type": "array", "items": {"type": "string", "maxLength": 320},
                               "minItems": 1, "maxItems": 100},
                "subject": {"type": ["string", "null"], "maxLength": 998},
                "authorised": {"type": "boolean", "default": True}}}}}},
        "responses": _answer({"$ref": "#/components/schemas/Explanation"},
                             "the decision, as `policy explain --json`")}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "smimegate admin API", "version": __version__},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "`smimegate admin token NAME`"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"},
                                         "field": {"type": ["string", "null"]}}},
                "Policy": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["value", "from"],
                    "properties": {"value": {"type": "string"}, "from": {
                        "type": "string",
                        "enum": ["default", "global", "domain", "user", "ldap"]}}}},
                "Explanation": {"type": "object", "required": [
                    "sender", "authorised", "direction", "reasons", "subject", "sign",
                    "sender_policy", "refusal", "recipients", "copies"]},
                **openapi_pki.SCHEMAS,
            },
        },
    }
