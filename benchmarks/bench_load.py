"""A classroom on one server: 30 sessions open the default page, and how long the slowest waits for its charts.

Target: every session shows its charts within 15 s when 30 open the page within 10 s on a fresh
server (the first one pays the cold start). Also run: all 30 at the same instant on a warm server.
Each session is a websocket client speaking the browser's protocol (tests/e2e/ws_client.py) to a
``streamlit run app.py`` on a loopback port started here; a session's time runs from its run request
to the end of its first run (all five charts and six cards sent). Run:

    PYTHONPATH=. python benchmarks/bench_load.py [--sessions 30] [--within 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.e2e.ws_client import open_sessions

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not become healthy within 120 s")


def _line(name: str, shown) -> float:
    done = [s.seconds for s in shown if s.finished and s.charts >= 5 and not s.exceptions]
    failed = len(shown) - len(done)
    slowest = max(done) if done else float("nan")
    print(f"  {name}: slowest {slowest:.1f} s, median {statistics.median(done):.1f} s"
          f"{f', {failed} sessions failed' if failed else ''} (target < {TARGET_S:.0f} s: "
          f"{'met' if slowest < TARGET_S and not failed else 'NOT met'})")
    return slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--within", type=float, default=10.0, help="seconds over which the sessions start")
    args = parser.parse_args()
    process, url = _start_server()
    try:
        print(f"load average over the last minute: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
              f"no GPU; {args.sessions} sessions on one server ({url})")
        cold = asyncio.run(open_sessions(url, [""] * args.sessions, within=args.within, timeout=300))
        _line(f"fresh server, {args.sessions} sessions starting within {args.within:g} s", cold)
        warm = asyncio.run(open_sessions(url, [""] * args.sessions, within=0.0, timeout=300))
        _line(f"warm server, {args.sessions} sessions at the same instant", warm)
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
