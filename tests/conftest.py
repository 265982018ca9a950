"""Shared AppTest helpers for every page's tests.

    def test_my_page(open_page):
        at = open_page("pages/compare.py")                 # defaults
        at = open_page("pages/compare.py", nodes=2)        # a changed topology, set in the sidebar
        assert_clean(at)

The first run imports torch cold, so every run gets APP_TIMEOUT seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
APP_TIMEOUT = 60
"""Seconds one AppTest run may take: a cold torch import plus the page's compute on 2 CPU cores."""


def plain(markdown: str) -> str:
    """Escaped Markdown (``ui.text.escape``) back to the characters it shows."""
    return re.sub(r"\\(.)", r"\1", markdown)


def sidebar_control(at: AppTest, name: str):
    """The sidebar widget for a ui.state parameter name (nodes, gpus_per_node, redundant, groups, mode, policy, ...)."""
    key = f"eplb_{name}"
    for widget in (*at.number_input, *at.selectbox, *at.segmented_control, *at.select_slider):
        if widget.key == key:
            return widget
    raise LookupError(f"no sidebar control {key!r} on this page")


ORDER = ("data", "sample", "preset", "family", "skew", "seed", "nodes", "gpus_per_node", "groups", "redundant", "mode",
         "policy")
"""The order set_controls applies controls in: a slider's values depend on the controls before it."""


def set_controls(at: AppTest, **values) -> AppTest:
    """Set sidebar controls by ui.state name, e.g. set_controls(at, nodes=2, redundant=16), and rerun.

    The topology controls are sliders over the values that fit the rest of the topology:
    a slider value that depends on another control is set after a rerun that applies it.
    A value no slider offers (a topology the sliders cannot reach) fails the test: open it
    with a link (``open_page(query_params=...)``) instead.
    """
    pending = False
    for name in sorted(values, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        value = values[name]
        try:
            control = sidebar_control(at, name)
        except LookupError:  # drawn once an earlier control (data="generate") has been applied
            at.run()
            control, pending = sidebar_control(at, name), False
        if control.type == "select_slider" and str(value) not in control.options and pending:
            at.run()
            control, pending = sidebar_control(at, name), False
        if control.type == "select_slider" and str(value) not in control.options:
            pytest.fail(f"the {name} slider offers {control.options}, not {value!r}: open it with a link instead",
                        pytrace=False)
        control.set_value(value)
        pending = True
    return at.run()


def assert_clean(at: AppTest) -> None:
    """No exception element and no uncaught error on the page."""
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture
def open_page():
    """open_page(page, query_params=None, **controls) -> AppTest after the page ran (and controls were set)."""

    def _open(page: str = "pages/explore.py", query_params: dict | None = None, **controls) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT)
        at.query_params.update(query_params or {})
        at.run()
        if page != "pages/explore.py":
            at.switch_page(page).run()
        if controls:
            set_controls(at, **controls)
        return at

    return _open
