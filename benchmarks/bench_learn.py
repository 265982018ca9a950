"""Time the Learn page: a class opening it, and Next / Back through every step of each lesson.

Target: under 300 ms server time per Next and Back on DeepSeek's README example. Each
time is one AppTest rerun of pages/learn.py (the script and the serialisation of what
it draws, which is the server's share of a click, plus AppTest's own small overhead).
A lesson depends only on its case, so it is built once per server and shared: the
first session pays for it, the others draw it. Run:

    PYTHONPATH=. python benchmarks/bench_learn.py [--sessions 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from eplb.explain import LESSONS

PAGE = Path(__file__).resolve().parent.parent / "pages" / "learn.py"


def timed(at: AppTest, action=None) -> tuple[float, float]:
    """(wall ms, CPU ms) of one rerun after ``action`` (a widget interaction), checked for errors."""
    if action is not None:
        action(at)
    start, cpu = time.perf_counter(), time.process_time()
    at.run()
    wall, used = (time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3
    assert not at.exception, [e.value for e in at.exception]
    return wall, used


def walk(at: AppTest) -> tuple[list[float], list[float]]:
    """Next to the last step, then Back to the first: the wall ms of each click."""
    forward, back = [], []
    while not at.button(key="learn_next").disabled:
        forward.append(timed(at, lambda a: a.button(key="learn_next").click())[0])
    while not at.button(key="learn_previous").disabled:
        back.append(timed(at, lambda a: a.button(key="learn_previous").click())[0])
    return forward, back


def summary(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return f"median {statistics.median(values):.0f} ms, p90 {p90:.0f} ms, max {values[-1]:.0f} ms ({len(values)} clicks)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30, help="sessions opening the page, one after another")
    args = parser.parse_args()

    first = AppTest.from_file(str(PAGE), default_timeout=120)
    cold_wall, cold_cpu = timed(first)  # imports, warm-up and the README lesson's build
    opens = [timed(AppTest.from_file(str(PAGE), default_timeout=120)) for _ in range(args.sessions - 1)]

    walks = {}
    for name in LESSONS:
        at = AppTest.from_file(str(PAGE), default_timeout=120)
        at.run()
        timed(at, lambda a, name=name: a.button(key=f"learn_start_{name}").click())
        first_walk = walk(at)  # a step's pictures are drawn the first time any session shows it
        walks[name] = (first_walk, walk(at))  # the second walk finds every step drawn

    edits = []
    for value in (500, 501, 502, 503, 504):  # a case no session has seen: a lesson built from scratch
        at = AppTest.from_file(str(PAGE), default_timeout=120)
        at.run()
        key = at.data_editor[0].key

        def edit(a, value=value, key=key):
            a.session_state[key] = {"edited_rows": {3: {"layer 0": value}}, "added_rows": [], "deleted_rows": []}

        edits.append(timed(at, edit)[0])

    print(f"load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall times grow when other work shares the CPU)")
    print("Learn page, AppTest reruns of pages/learn.py")
    print(f"  first session on a fresh server process: {cold_wall:.0f} ms wall, {cold_cpu:.0f} ms CPU "
          "(imports, torch warm-up, the README lesson built)")
    open_wall = [w for w, _ in opens]
    print(f"  {args.sessions - 1} more sessions opening it (the lesson shared): median "
          f"{statistics.median(open_wall):.0f} ms, max {max(open_wall):.0f} ms; all {args.sessions} sessions "
          f"together {cold_cpu + sum(c for _, c in opens):.0f} ms CPU")
    for name, ((first_forward, first_back), (forward, back)) in walks.items():
        print(f"  {LESSONS[name].label}:")
        print(f"    Next, first time through (each step's pictures drawn): {summary(first_forward)}")
        print(f"    Next and Back once drawn: {summary(forward + back)} (target < 300 ms)")
        print(f"    Back, first time: {summary(first_back)}")
    print(f"  an edited cell (a new case, lesson built from scratch): median {statistics.median(edits):.0f} ms, "
          f"max {max(edits):.0f} ms")


if __name__ == "__main__":
    main()
