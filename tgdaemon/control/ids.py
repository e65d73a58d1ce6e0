"""Ids in control API paths (accounts, quotas): ASCII digits within SQLite's INTEGER, else 404."""

from __future__ import annotations

import re

from aiohttp import web

MAX_ID = 2**63 - 1


def path_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not re.fullmatch(r"[0-9]{1,19}", raw) or int(raw) > MAX_ID:
        raise web.HTTPNotFound()
    return int(raw)
