"""A classroom at once: 30 sessions open the default page within 10 s over the app's websocket, on one server.

Each client (``tests.e2e.ws_client``) speaks the browser's protocol to the test session's
``streamlit run app.py`` on a loopback port, so 30 sessions cost the server what 30 browsers
would, without 30 browsers on the same two cores. Every session must finish its first run with
all five charts and six metric cards and no exception. The slowest and median times are printed
(and kept in test-output/e2e/figures.json); the 15 s target is benchmarks/bench_load.py's, not an
assertion here: each session only has to finish within ``SESSION_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import statistics

from tests.e2e.ws_client import open_sessions

SESSIONS = 30
WITHIN_S = 10.0
SESSION_TIMEOUT_S = 240.0
"""Longest a session may take to show its charts here: bounds the test's run time on a loaded machine."""


def test_thirty_sessions_opening_the_default_page_all_show_their_charts(server, report):
    before = server.memory_kib()
    shown = asyncio.run(open_sessions(server.url, [""] * SESSIONS, within=WITHIN_S, timeout=SESSION_TIMEOUT_S))
    memory = server.memory_kib()
    seconds = sorted(s.seconds for s in shown if s.finished)
    report("thirty sessions", {
        "sessions": SESSIONS, "within_s": WITHIN_S,
        "slowest_s": round(seconds[-1], 1) if seconds else None,
        "median_s": round(statistics.median(seconds), 1) if seconds else None,
        "slowest_first_chart_s": round(max(s.first_chart_s for s in shown), 1),
        "server_rss_before_mib": round(before["rss"] / 1024), "server_peak_rss_mib": round(memory["peak"] / 1024),
    })
    problems = [(i, s) for i, s in enumerate(shown)
                if not s.finished or s.exceptions or s.charts < 5 or s.metrics < 6]
    assert not problems, problems
