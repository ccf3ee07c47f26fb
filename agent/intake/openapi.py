"""The OpenAPI 3.1 description served at /openapi.json (kept next to the code it describes)."""

from __future__ import annotations

from typing import Any

from agent.core.states import IntakeStatus

_ERR = {"$ref": "#/components/schemas/Errors"}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": desc}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


_ADMIN = {
    "401": _resp("Missing or wrong admin bearer token", _ERR),
    "403": _resp("Admin API disabled: set LEADBOX_ADMIN_TOKEN", _ERR),
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "leadbox", "version": "0.1.0",
             "description": "Every inbound contact becomes a triaged, answered lead. The lead console's "
                            "HTML pages under /console (sign-in, list, lead, actions) are not part of this "
                            "API and are not described here."},
    "paths": {
        "/leads": {
            "post": {
                "summary": "Submit a lead (web form or integration)",
                "description": "JSON, or a plain HTML form. A form post whose Accept prefers HTML gets a "
                               "303 to the thank-you page, or an HTML page with the same status as below.",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/LeadIn"}},
                    "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                    "multipart/form-data": {"schema": {"type": "object"}}}},
                "responses": {
                    "202": _resp("Stored; it will be classified and answered",
                                 {"$ref": "#/components/schemas/Accepted"}),
                    "200": _resp("Known email: kept as an interaction, no new reply",
                                 {"$ref": "#/components/schemas/Accepted"}),
                    "401": _resp("Webhook authentication configured and missing or wrong", _ERR),
                    "400": _resp("Body could not be read (broken framing or Content-Encoding)", _ERR),
                    "408": _resp("Body not received in time", _ERR),
                    "413": _resp("Body over the size limit (64 KiB)", _ERR),
                    "303": _resp("A browser form post: see Location (the thank-you page)"),
                    "403": _resp("forms.require_origin and no listed Origin", _ERR),
                    "415": _resp("Not JSON or a form (Content-Type or body)", _ERR),
                    "422": _resp("Invalid fields", _ERR),
                    "429": _resp("Rate limited; see Retry-After", _ERR),
                    "503": _resp("Shutting down or storage unavailable; see Retry-After", _ERR),
                },
            },
            "options": {"summary": "CORS preflight", "responses": {"204": _resp("Allowed origin"),
                                                                   "403": _resp("Origin not listed", _ERR)}},
            "get": {
                "summary": "A page of leads (admin)",
                "parameters": [
                    {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                    for n in ("status", "category", "priority", "reply", "limit", "cursor")
                ],
                "responses": {"200": _resp("A page; pass next_cursor as cursor for the next"),
                              "422": _resp("Bad filter", _ERR), **_ADMIN},
            },
        },
        "/forms/thanks": {
            "get": {"summary": "The built-in thank-you page (HTML)", "responses": {"200": _resp("HTML page")}},
        },
        "/leads/{id}": {
            "post": {
                "summary": "Submit a form service's own webhook payload: the path segment is a preset name "
                           "(tally, typeform, webflow, or one of [forms.presets])",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "202": _resp("Stored", {"$ref": "#/components/schemas/Accepted"}),
                    "200": _resp("Known email", {"$ref": "#/components/schemas/Accepted"}),
                    "404": _resp("No such preset", _ERR),
                    "422": _resp("Not that service's payload, or invalid fields", _ERR),
                },
            },
            "options": {"summary": "CORS preflight", "responses": {"204": _resp("Allowed origin"),
                                                                   "403": _resp("Origin not listed", _ERR)}},
            "get": {
                "summary": "One lead with its state, classification, reply status and interactions (admin)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _resp("The lead"), "404": _resp("No such lead", _ERR), **_ADMIN},
            },
        },
        "/leads/{id}/retry": {
            "post": {
                "summary": "Put a failed lead back in the queue (admin)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"202": _resp("Queued"), "404": _resp("No such lead", _ERR),
                              "409": _resp("Not a failed lead", _ERR), **_ADMIN},
            },
        },
        "/inbox/poll": {
            "post": {
                "summary": "Poll the mailbox now (admin)",
                "responses": {"202": _resp("Poll scheduled"), "409": _resp("Inbox not enabled", _ERR), **_ADMIN},
            },
        },
        "/healthz": {"get": {"summary": "The process answers", "responses": {"200": _resp("Alive")}}},
        "/readyz": {"get": {"summary": "Store, scheduler and adapters", "responses": {
            "200": _resp("Ready"), "503": _resp("Not ready; the body says which part")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (leadbox_*)", "responses": {"200": _resp("Metrics")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _resp("OpenAPI")}}},
    },
    "components": {
        "schemas": {
            "LeadIn": {
                "type": "object",
                "required": ["name", "email", "message"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "email": {"type": "string", "format": "idn-email", "maxLength": 254},
                    "message": {"type": "string", "minLength": 1, "maxLength": 20000},
                    "phone": {"type": "string", "maxLength": 200},
                    "company": {"type": "string", "maxLength": 200},
                    "source": {"type": "string", "maxLength": 200},
                    "metadata": {"type": "object", "description": "At most 8 KiB as JSON"},
                },
            },
            "Accepted": {"type": "object", "required": ["id", "status"], "properties": {
                "id": {"type": "string"}, "status": {"type": "string", "enum": [s.value for s in IntakeStatus]}}},
            "Errors": {"type": "object", "required": ["errors"], "properties": {"errors": {
                "type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {
                    "field": {"type": "string"}, "message": {"type": "string"}}}}}},
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}
