"""``GET /api/provider/openapi.json``: generated from the same structs that decode and encode the bodies.

Nothing here restates a field by hand, so the document cannot drift from
what the handlers accept: a fuzzer that builds requests from it tests the
real validation.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from tgdaemon import __version__
from tgdaemon.httpjson import json_response
from tgdaemon.provider.tasks import ROUTES


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class WhoAmI(msgspec.Struct):
    provider: str


class Health(msgspec.Struct, omit_defaults=True):
    ok: bool
    uptime_seconds: float
    store_down: str | None = None  # only while the database cannot be reached: why
    store_down_since: str | None = None


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build() -> dict[str, Any]:
    bodies = [t for _, req, resp, _ in ROUTES.values() for t in (req, resp)]
    schemas, components = msgspec.json.schema_components(
        [*bodies, ErrorBody, WhoAmI, Health], ref_template="#/components/schemas/{name}")
    error = schemas[len(bodies)]
    unauthorized = {**_json(error, "Missing, malformed, unknown or revoked token."),
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"},
                                                     "description": 'Bearer realm="tgfleet"'}}}
    # Every other answer (405 with Allow for a method a path lacks, 404, a 500) has the same body.
    other = {"default": _json(error, "Any other error; 405 answers carry Allow.")}
    errors = {"400": _json(error, "The body is not valid JSON, or does not match the schema. A number with a"
                                  " zero fraction (5.0) counts as an integer, as in JSON Schema."),
              "401": unauthorized,
              "413": _json(error, "The body is larger than 1 MiB."),
              "415": _json(error, "The body is not application/json."),
              "503": {**_json(error, "The database cannot be reached (code `store_unavailable`, with Retry-After):"
                                     " the daemon retries by itself, and so should the client; or it cannot be written"
                                     " (disk full or failing, code `unavailable`) and the daemon is stopping. Retry"
                                     " once it is back: a report applied before answers `duplicate`."),
                      "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                  "description": "Seconds; sent with `store_unavailable`."}}},
              **other}
    paths: dict[str, Any] = {}
    for i, (path, (handler, _, _, summary)) in enumerate(ROUTES.items()):
        paths["/api/provider" + path] = {"post": {
            "operationId": handler.__name__, "summary": summary, "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": schemas[2 * i]}}},
            "responses": {"200": _json(schemas[2 * i + 1], "Answered."), **errors}}}
    def authenticated(operation: str, summary: str, ok: dict[str, Any]) -> dict[str, Any]:
        return {"get": {"operationId": operation, "summary": summary, "security": [{"bearer": []}],
                        "responses": {"200": ok, "401": unauthorized, **other}}}

    paths["/api/provider/whoami"] = authenticated("whoami", "The provider this token is.",
                                                  _json(schemas[-2], "The provider's name."))
    paths["/api/provider/openapi.json"] = authenticated(
        "openapi", "This document.", _json({"type": "object"}, "OpenAPI 3.1"))
    paths["/healthz"] = {"get": {"operationId": "healthz", "summary": "Liveness and readiness; needs no token.",
                                 "responses": {"200": _json(schemas[-1], "The daemon is up and takes work."),
                                               "503": _json(schemas[-1], "Degraded: the daemon runs but its database"
                                                                         " cannot be reached (`store_down` says why);"
                                                                         " it takes no work until it is back."),
                                               **other}}}
    paths["/metrics"] = {"get": {"operationId": "metrics", "summary": "Prometheus text format; needs no token.",
                                 "responses": {"200": {"description": "Metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}},
                                               **other}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tgfleet provider API", "version": __version__,
                 "description": "Pull leased quota tasks, report their results. See docs/providers.md."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "A token from `tgdaemon providers add`."}}},
    }


async def openapi(request: web.Request) -> web.Response:
    return json_response(build())
