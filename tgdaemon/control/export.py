"""``POST /accounts/export``: the one route that hands a session (its auth key) out, for ``accounts export``.

Only over the control socket (mode 0600, the daemon's own uid: ``api.same_uid_only``), in the answer's
body only (no cache, never in a log line: the access log has the request line, which names no account),
and each hand-out is in the audit trail, without the key.
"""

from __future__ import annotations

import base64
from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon.errors import NotFound
from tgdaemon.httpjson import json_response, read_body
from tgdaemon.runtime import RUNTIME
from tgdaemon.wire import ExportedSession, ExportedSessions, ExportFormat

MAX_IDS = 10_000


class ExportBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ids: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=2**62)]], msgspec.Meta(min_length=1, max_length=MAX_IDS)]
    format: ExportFormat  # what the CLI writes: for the audit trail only


async def export_sessions(request: web.Request) -> web.Response:
    """All the accounts or none: one without a session (a simulated account, or one never signed in) is a 404
    naming it, and nothing is handed out."""
    body = await read_body(request, ExportBody)
    rt = request.config_dict[RUNTIME]
    store = rt.store
    out: list[ExportedSession] = []
    for account_id in dict.fromkeys(body.ids):
        account = await store.get_account(account_id)
        data = await store.load_session(account_id)
        if data is None or not data.auth_key:
            raise NotFound(f"account {account_id} ({account['label']}) has no session to export")
        user_id, _ = await store.account_ref(account_id)
        own = (await store.client_params(account_id)).device.api_id
        out.append(ExportedSession(account_id=account_id, label=account["label"], dc_id=data.dc_id,
                                   server=data.server, port=data.port,
                                   auth_key=base64.b64encode(data.auth_key).decode(), user_id=user_id,
                                   api_id=own or rt.cfg.telegram.api_id or None))
    async with store.tx() as tx:
        for session in out:
            await tx.event("account.exported", f"session handed out for export ({body.format})",
                           account_id=session.account_id, data={"format": body.format})
    response = json_response(ExportedSessions(sessions=out))
    response.headers["Cache-Control"] = "no-store"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_post("/accounts/export", export_sessions)
