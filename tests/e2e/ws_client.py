"""A minimal Streamlit client over the app's own websocket, for load tests: many sessions without a browser each.

It speaks what the browser speaks (``/_stcore/stream``, subprotocol "streamlit", binary protobufs):
one ``BackMsg.rerun_script`` with the link's query string, then the server's ``ForwardMsg``s until
the run's ``script_finished``. It records what the run drew (charts, metrics, exceptions) and when.

    shown = await open_session("http://127.0.0.1:8501", "nodes=2&redundant=16")
    assert shown.finished and shown.charts >= 5 and not shown.exceptions, shown
    print(f"charts after {shown.seconds:.1f} s")

Loopback only: ``open_session`` refuses any host but 127.0.0.1 / localhost.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from dataclasses import dataclass, field

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

LOOPBACK = ("127.0.0.1", "localhost")


@dataclass
class Shown:
    """What one session's first run drew: charts (Plotly), metric cards, exception messages, and when it ended.

    seconds: from sending the run request to the run's end (the last chart is sent before it);
    finished: the run ended on its own (not cut short or timed out).
    """

    charts: int = 0
    metrics: int = 0
    exceptions: list[str] = field(default_factory=list)
    seconds: float = float("nan")
    finished: bool = False
    first_chart_s: float = float("nan")


async def open_session(base_url: str, query: str = "", *, timeout: float = 120.0) -> Shown:
    """Open one session on ``base_url`` (http://host:port) with a link's query string; what its first run drew."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.hostname not in LOOPBACK:
        raise ValueError(f"load tests run on this machine only, not against {parts.hostname!r}")
    uri = f"ws://{parts.netloc}/_stcore/stream"
    request = BackMsg()
    request.rerun_script.query_string = query
    request.rerun_script.page_script_hash = ""
    shown = Shown()
    start = time.perf_counter()
    async with websockets.connect(uri, subprotocols=["streamlit"], max_size=None, open_timeout=timeout,
                                  ping_interval=None) as ws:
        await ws.send(request.SerializeToString())
        deadline = start + timeout
        while True:
            data = await asyncio.wait_for(ws.recv(), max(deadline - time.perf_counter(), 0.001))
            message = ForwardMsg()
            message.ParseFromString(data)
            kind = message.WhichOneof("type")
            if kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                element = message.delta.new_element.WhichOneof("type")
                if element == "plotly_chart":
                    shown.charts += 1
                    if shown.charts == 1:
                        shown.first_chart_s = time.perf_counter() - start
                elif element == "metric":
                    shown.metrics += 1
                elif element == "exception":
                    shown.exceptions.append(message.delta.new_element.exception.message)
            elif kind == "script_finished":
                shown.seconds = time.perf_counter() - start
                shown.finished = message.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY
                return shown


async def open_sessions(base_url: str, queries: list[str], *, within: float = 0.0,
                        timeout: float = 120.0) -> list[Shown]:
    """Open one session per query string, their starts spread evenly over ``within`` seconds; all their results."""

    async def one(index: int, query: str) -> Shown:
        await asyncio.sleep(within * index / max(len(queries), 1))
        try:
            return await open_session(base_url, query, timeout=timeout)
        except (asyncio.TimeoutError, OSError, websockets.WebSocketException) as exc:
            return Shown(exceptions=[f"{type(exc).__name__}: {exc}"])

    return await asyncio.gather(*(one(i, q) for i, q in enumerate(queries)))
