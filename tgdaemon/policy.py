"""What an error class does to an account (design section 6): one table for setup tasks and quota reports."""

from __future__ import annotations

import random

from tgdaemon.classify import Classified, ErrorClass
from tgdaemon.config import LimitsConfig
from tgdaemon.store import AccountEffect


def account_effect(error: Classified, limits: LimitsConfig, at: float) -> AccountEffect:
    """A wait cools the account down (with jitter, so a fleet does not wake at once); spam-limited
    cools it down for long; a dead proxy holds it (reason ``proxy``, as the health checker's hold); a dead
    account is disabled with the code as reason; the rest leave it be."""
    if error.kind is ErrorClass.WAIT:
        until = at + (error.seconds or 0) + random.uniform(0, limits.flood_wait_jitter_seconds)
        return AccountEffect(cooldown_until=until, cooldown_reason=error.code, error_code=error.code)
    if error.kind is ErrorClass.SPAM_LIMITED:
        return AccountEffect(cooldown_until=at + limits.peer_flood_cooldown_seconds, cooldown_reason=error.code,
                             error_code=error.code)
    if error.kind is ErrorClass.PROXY:  # until the health checker speaks again; no jitter: it speaks for all
        return AccountEffect(cooldown_until=at + (error.seconds or 0), cooldown_reason="proxy", error_code=error.code)
    if error.kind is ErrorClass.DEAD_ACCOUNT:
        return AccountEffect(disable_reason=error.code, error_code=error.code)
    return AccountEffect(error_code=error.code)
