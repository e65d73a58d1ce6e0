"""Times and charts a person can read: the one relative-time format, the charts' scales and axes, the
quota chart's words for too few measurements, and the pulse view's parsing and drawing."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tgdaemon.control.client import ControlClient
from tgdaemon.display import absolute, moment, relative, span
from tgtui.chart import buckets, nice_ceiling, number, plot
from tgtui.fmt import ago, percent, when
from tgtui.model import FleetModel, parse_pulse
from tgtui.screens import measured
from tgtui.screens.pulse import FAILED, draw, fold, queue_order

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC).timestamp()


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s"), (42.9, "42s"), (60, "1m"), (299, "4m"), (3600, "1h"), (7140, "1h 59m"), (36000, "10h"),
    (100_000, "27h"), (172_800, "2d"), (604_799, "6d 23h"), (864_000, "10d"), (-185, "3m")])
def test_a_span_is_cut_down_with_a_second_unit_only_while_the_first_is_one_digit(seconds: float, shown: str) -> None:
    assert span(seconds) == shown


def test_relative_times_read_forwards_and_backwards_from_now() -> None:
    assert relative(NOW + 240, NOW) == "in 4m"
    assert relative(NOW - 3 * 3600, NOW) == "3h ago"
    assert relative(NOW - 4, NOW) == "just now" and relative(NOW, NOW) == "just now"
    assert relative(NOW - 5, NOW) == "5s ago" and relative(NOW + 1, NOW) == "in 1s"
    assert absolute(NOW - 177) == "2026-01-15 11:57:03Z"
    assert moment(NOW - 177, NOW) == "2026-01-15 11:57:03Z (2m ago)"


def test_the_views_formatters_take_iso_and_name_a_deadline_that_has_come() -> None:
    assert ago(iso(NOW + 600), NOW, "due") == "in 10m" and ago(iso(NOW - 1), NOW, "due") == "due"
    assert ago(iso(NOW - 7200), NOW) == "2h ago" and ago(None, NOW) == "" and ago(None, NOW, empty="never") == "never"
    assert when(iso(NOW + 86400 * 2), NOW) == "2026-01-17 12:00:00Z (in 2d)" and when(None, NOW) == "never"
    assert [percent(d, 500) for d in (0, 1, 180, 499, 500)] == ["0%", "1%", "36%", "99%", "100%"]
    assert percent(0, 0) == "-"


def test_scale_numbers_are_round_and_short() -> None:
    assert [number(v) for v in (0, 7, 2.5, 950, 1200, 1000, 48_000, 3_100_000)] == [
        "0", "7", "2.5", "950", "1.2k", "1k", "48k", "3.1M"]
    assert [nice_ceiling(v) for v in (0, 0.7, 7, 52, 100, 101, 470, 9100)] == [1, 0.8, 8, 60, 100, 120, 500, 10_000]


def test_buckets_sum_or_keep_the_last_and_leave_empty_spans_empty() -> None:
    points = [(0.0, 1.0), (1.0, 2.0), (9.0, 5.0), (10.0, 7.0)]
    assert buckets(points, 0, 10, 2) == [3.0, 12.0]
    assert buckets(points, 0, 10, 2, "last") == [2.0, 7.0]
    assert buckets(points, 0, 10, 4) == [3.0, None, None, 12.0]


def test_a_plot_has_its_scale_its_time_axis_and_tells_zero_from_nothing() -> None:
    lines = plot([((4.0, "cyan"),), None, ((0.0, "cyan"),), ((2.0, "cyan"),)], height=3,
                 x_labels=("2h ago", "1h ago", "now"), cell_width=3)
    text = [line.plain for line in lines]
    assert text[0].startswith("4 ┤") and text[1].startswith("2 ┤") and text[2].startswith("0 ┤")
    assert text[2][3:] == "███   ···███"  # a zero is a dotted foot; no measurement is nothing at all
    assert text[0][3:] == "███         " and text[1][3:] == "███      ▄▄▄"
    assert text[3] == "  └" + "─" * 12
    assert text[4].split() == ["2h", "ago", "now"]  # the middle label does not fit between: left out, not overlaid


def test_a_stacked_column_keeps_a_small_failure_visible_in_its_colour() -> None:
    lines = plot([((1.0, "red"), (99.0, "green"))], height=2, x_labels=("-60m", "", "now"))
    bottom = lines[1]
    spans = {bottom.plain[s.start:s.end]: str(s.style) for s in bottom.spans}
    assert spans.get("▁") == "red on green"  # the failure's eighth, under the done part filling the cell


def test_a_narrow_range_high_up_is_labelled_in_full() -> None:
    lines = plot([((v, "cyan"),) for v in (10_000.0, 10_010.0, 10_020.0)], height=3, low=10_000, high=10_020,
                 x_labels=("", "", ""))
    assert [line.plain.split(" ")[0] for line in lines[:3]] == ["10,020", "10,010", "10,000"]


def quota(action: str = "post_stats") -> dict[str, Any]:
    return {"id": 1, "action": action, "next_run_at": iso(NOW + 600)}


def post_rows(times: int, posts: int = 2) -> list[dict[str, Any]]:
    return [{"observed_at": iso(NOW - (times - t) * 300), "post_id": p, "views": 100 * p + 10 * t, "subscribers": None}
            for t in range(times) for p in range(1, posts + 1)]


def test_a_quota_without_measurements_says_when_the_first_is_due() -> None:
    assert [line.plain for line in measured.draw(quota(), [], NOW, 76, 7)] == [
        "No measurements yet: the first is due in 10m."]


def test_one_or_two_measurement_times_are_said_in_words() -> None:
    one = [line.plain for line in measured.draw(quota(), post_rows(1), NOW, 76, 7)]
    assert one == ["1 measurement time so far; the chart starts at 3.",
                   "  2026-01-15 11:55:00Z (5m ago)  300 views on 2 posts"]
    two = [line.plain for line in measured.draw(quota(), post_rows(2), NOW, 76, 7)]
    assert two[2] == "  2026-01-15 11:55:00Z (5m ago)  320 views on 2 posts, +20 since the time before"
    channel = [{"observed_at": iso(NOW - 60), "post_id": None, "views": None, "subscribers": 12_345}]
    assert measured.draw(quota("channel_stats"), channel, NOW, 76, 7)[1].plain.endswith("12,345 subscribers")


def test_three_measurement_times_make_a_chart_with_a_scale_and_a_time_axis() -> None:
    lines = [line.plain for line in measured.draw(quota(), post_rows(5), NOW, 76, 7)]
    assert len(lines) == 7 and lines[0].startswith("20 ┤") and lines[4].startswith(" 0 ┤")
    assert lines[6].split() == ["25m", "ago", "15m", "ago", "5m", "ago"]
    assert len(lines[0]) <= 76 and "·" in lines[4]  # the first pass counts the posts: no gain yet
    title = measured.title(quota(), post_rows(5), 76, 7)
    assert title == "Views gained over 20m (each bar: the views gained in 4m)"


def pulse_answer(**queues: tuple[list[int], list[int]]) -> dict[str, Any]:
    return {"at": iso(NOW), "minutes": 60, "queues": {
        name: {"done": done, "failed": failed} for name, (done, failed) in queues.items()}}


def test_the_pulse_answer_is_checked_as_it_is_read() -> None:
    pulse = parse_pulse(pulse_answer(fast=([1] * 60, [0] * 60)))
    assert pulse.at == NOW and pulse.queues["fast"] == ([1] * 60, [0] * 60)
    with pytest.raises(ValueError, match="'fast': 59 done and 60 failed counts for 60 minutes"):
        parse_pulse(pulse_answer(fast=([1] * 59, [0] * 60)))
    model = FleetModel(lambda: NOW)
    model.set_pulse(None, "not found")
    assert model.pulse is None and model.pulse_error == "not found" and model.pulse_rev == 1


def test_queues_are_in_order_and_minutes_fold_with_the_current_one_last() -> None:
    assert queue_order(["pulled:local", "media", "pulled:a", "fast"]) == ["fast", "media", "pulled:a", "pulled:local"]
    assert fold([1, 2, 3, 4, 5], 2) == [1, 5, 9]


def test_the_pulse_draws_each_busy_queue_with_labelled_axes() -> None:
    done = [10] * 30 + [30] * 30
    failed = [0] * 50 + [5] + [0] * 9
    pulse = parse_pulse(pulse_answer(fast=(done, failed), **{"pulled:x": ([0] * 60, [0] * 60)}))
    lines = draw(pulse, None, NOW + 3, 78, 20)
    text = [line.plain for line in lines]
    assert text[0].startswith("Tasks per minute, last hour: █ done █ failed") and text[0].endswith("as of just now")
    assert text[1].startswith("fast") and "1,200 done  5 failed" in text[1] and "y: tasks/min, 0 to 40" in text[1]
    # ten rows of bars (the most a queue gets), then the x-axis and its labels; the idle queue is one line
    assert text[2].startswith("40 ┤") and text[11].startswith(" 0 ┤") and len(text[2]) == 4 + 60
    assert text[12] == "   └" + "─" * 60
    assert text[13].split() == ["-60m", "-30m", "now"]
    assert text[14].startswith("pulled:x") and text[14].endswith("nothing done or failed in the last hour") and len(text) == 15
    failed_column = 4 + 50
    assert any(str(s.style).startswith(FAILED) for s in lines[11].spans if s.start <= failed_column < s.end)


def test_a_pulse_narrower_than_an_hour_sums_minutes_and_says_so() -> None:
    pulse = parse_pulse(pulse_answer(fast=([2] * 60, [0] * 60)))
    text = [line.plain for line in draw(pulse, None, NOW, 40, 12)]
    assert "y: tasks/2 min, 0 to 4" in text[1] and max(len(t) for t in text[2:]) <= 40


def test_the_pulse_says_why_it_has_nothing_to_draw() -> None:
    assert draw(None, None, NOW, 80, 20)[-1].plain == "asking the daemon for its pulse…"
    lines = [line.plain for line in draw(None, "HTTP 404", NOW, 80, 20)]
    assert "the daemon's pulse: HTTP 404" in lines


def test_the_control_client_asks_for_the_pulse_over_the_socket() -> None:
    """A real aiohttp server on a real Unix socket: the route, the query, the answer as sent."""
    async def run() -> tuple[dict[str, Any], list[str]]:
        asked: list[str] = []

        async def pulse(request: web.Request) -> web.Response:
            asked.append(request.query_string)
            return web.json_response(pulse_answer(fast=([1] * 60, [0] * 60)))

        app = web.Application()
        app.router.add_get("/v1/pulse", pulse)
        runner = web.AppRunner(app)
        await runner.setup()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "control.sock"
            await web.UnixSite(runner, str(path)).start()
            try:
                async with ControlClient(path, timeout=5) as client:
                    return await client.pulse(60), asked
            finally:
                await runner.cleanup()

    answer, asked = asyncio.run(run())
    assert asked == ["minutes=60"] and answer["queues"]["fast"]["done"] == [1] * 60


def test_a_level_is_drawn_as_a_line_not_a_wall() -> None:
    rows = [{"observed_at": iso(NOW - 60 * t), "post_id": None, "views": None, "subscribers": 40_318} for t in (3, 2, 1)]
    lines = [line.plain for line in measured.draw(quota("channel_stats"), rows, NOW, 40, 7)]
    assert lines[0].startswith("50k ┤") and lines[4].startswith("  0 ┤")
    bars = [line[5:] for line in lines[:5]]
    assert [row.strip() != "" for row in bars] == [False, True, False, False, False]  # 40,318 of 50k: row 4 of 5
    assert measured.title(quota("channel_stats"), rows, 40, 7).startswith("Subscribers over 2m (each step:")
