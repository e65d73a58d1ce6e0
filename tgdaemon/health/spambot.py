"""What @SpamBot's answer says, read conservatively: only the answers whose words are known count.

The bot answers in the account's language and its wording changes over time; an answer that matches none of
the known English texts is recorded as ``unknown``, with its text, never guessed at. The known ones (as the
bot words them in English):

* free: "Good news, no limits are currently applied to your account. You're free as a bird!"
* limited until a date: "... your account is now limited until 17 Jun 2025, 10:57 UTC. ..."
* limited with no end: "... some phone numbers may trigger a harsh response from our anti-spam systems ..."
  or "... While the account is limited, you will not be able to send messages ..."
* blocked: "Your account was blocked for violations of the Telegram Terms of Service ..."
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

TEXT_LIMIT = 500  # characters of the answer kept in health_detail

_FREE = ("no limits are currently applied", "free as a bird")
_LIMITED = ("harsh response from our anti-spam systems", "while the account is limited",
            "your account is now limited", "account is limited")
_BLOCKED = "your account was blocked for violations of the telegram terms of service"
_UNTIL = re.compile(r"limited until (\d{1,2}) ([A-Za-z]{3})[a-z]* (\d{4}),? (\d{1,2}):(\d{2})(?: ?UTC)?")
_MONTHS = {m: n for n, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                       "dec"), start=1)}


@dataclass(frozen=True, slots=True)
class SpamBotAnswer:
    status: str  # free | limited | blocked | unknown
    until: float | None  # limited: when the limit ends (Unix seconds, UTC); None: no end given (or not limited)
    text: str  # the answer, whitespace collapsed, cut to TEXT_LIMIT


def read_answer(text: str | None) -> SpamBotAnswer:
    """The status an answer states; ``unknown`` unless its words are known (and never both free and limited)."""
    if text is None:
        return SpamBotAnswer("unknown", None, "")
    flat = " ".join(text.replace("\u2019", "'").split())
    kept = flat if len(flat) <= TEXT_LIMIT else flat[:TEXT_LIMIT - 1] + "…"
    lower = flat.lower()
    free = all(words in lower for words in _FREE)
    limited = any(words in lower for words in _LIMITED)
    if _BLOCKED in lower and not free:
        return SpamBotAnswer("blocked", None, kept)
    if free and not limited:
        return SpamBotAnswer("free", None, kept)
    if limited and not free:
        return SpamBotAnswer("limited", _until(flat), kept)
    return SpamBotAnswer("unknown", None, kept)


def _until(text: str) -> float | None:
    match = _UNTIL.search(text)
    if match is None or (month := _MONTHS.get(match[2].lower())) is None:
        return None
    try:
        return datetime(int(match[3]), month, int(match[1]), int(match[4]), int(match[5]), tzinfo=UTC).timestamp()
    except ValueError:  # 31 Feb: not a date
        return None
