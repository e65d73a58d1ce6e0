"""@SpamBot's answers read conservatively: the known English wordings count, anything else is ``unknown``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tgdaemon.gateway.simworld import (
    SPAMBOT_BLOCKED,
    SPAMBOT_FREE,
    SPAMBOT_LIMITED,
    SPAMBOT_LIMITED_UNTIL,
)
from tgdaemon.health.spambot import TEXT_LIMIT, read_answer


def test_the_known_answers() -> None:
    free = read_answer(SPAMBOT_FREE)
    assert (free.status, free.until) == ("free", None)
    assert free.text == "Good news, no limits are currently applied to your account. You're free as a bird!"
    until = read_answer(SPAMBOT_LIMITED_UNTIL.format(until="7 Mar 2031, 09:05 UTC"))
    assert (until.status, until.until) == ("limited", datetime(2031, 3, 7, 9, 5, tzinfo=UTC).timestamp())
    assert "\n" not in until.text  # whitespace collapsed: it is shown on one line
    assert (read_answer(SPAMBOT_LIMITED).status, read_answer(SPAMBOT_LIMITED).until) == ("limited", None)
    assert read_answer(SPAMBOT_BLOCKED).status == "blocked"


@pytest.mark.parametrize("text", [
    None, "", "/start", "Привет! Ограничений нет.",  # no answer; another language
    SPAMBOT_FREE + " While the account is limited, you will not be able to ...",  # free and limited at once
    "Good news!",  # half of the free answer is not the free answer
])
def test_anything_else_is_unknown(text: str | None) -> None:
    answer = read_answer(text)
    assert (answer.status, answer.until) == ("unknown", None)


@pytest.mark.parametrize("until", ["31 Feb 2031, 10:00 UTC", "7 Foo 2031, 10:00 UTC", "soon"])
def test_a_limit_whose_end_cannot_be_read_is_limited_without_an_end(until: str) -> None:
    answer = read_answer(SPAMBOT_LIMITED_UNTIL.format(until=until))
    assert (answer.status, answer.until) == ("limited", None)


def test_a_long_answer_is_kept_cut() -> None:
    answer = read_answer(SPAMBOT_LIMITED + " x" * 1000)
    assert answer.status == "limited" and len(answer.text) == TEXT_LIMIT and answer.text.endswith("…")
