"""Keeps every page inside app.py's navigation, however the app is first opened, and compiles the
balancer's loops before a page needs them (``compiled_loops``).

Streamlit treats a ``pages/`` folder beside the entry script as a legacy multipage app until
some session has called ``st.navigation``. So on a freshly started server, the first browser
that opens a direct link (``/learn``, ``/replay``) gets that page run on its own, without
app.py: Streamlit's file-name navigation ("app", "compare", ...), no page config. Every page
imports ``ui`` first, so ``ui/__init__.py`` calls ``use_app_navigation()``: it switches
Streamlit to ``st.navigation`` for good and reruns, and the rerun goes through app.py to the
same page (a legacy page and its ``st.Page`` share a URL path, hence a page hash).
"""

from __future__ import annotations

import gc

import streamlit as st

from eplb import kernels


def use_app_navigation() -> None:
    """Leave Streamlit's legacy ``pages/`` mode and rerun through app.py; a no-op once any session ran app.py."""
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False  # what st.navigation sets, for every session
        st.rerun()


def freeze_startup_objects() -> None:
    """Exempt everything loaded so far from the cyclic garbage collector, once per process (``gc.freeze``).

    A server runs ``gc.collect(2)`` after every script run (Streamlit's ``runner.postScriptGC``), which walks
    every object the process holds: after Explore's first run, ~277,000 (torch, plotly, pandas, the app), 175
    ms of CPU at load 4 on the 2-core machine for an unchanged rerun that itself takes ~20 ms, holding the GIL
    from every other session. Frozen, those objects are skipped (the collection took 0.8 ms); they are still
    freed when nothing refers to them, only a reference cycle among them is never collected. Garbage present
    now is collected first, so none of it is kept.
    """
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def compiled_loops() -> None:
    """``eplb.kernels.warm_up`` once per server process, under a spinner: on a fresh install the
    first rebalance would otherwise leave the page blank while numba compiles (later processes
    load the compiled loops from the cache in a fraction of a second). Outside a script run
    (``ui`` imported by a test or a script) there is no page to keep informed: nothing to do."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is not None:
        _warm_up()


@st.cache_resource(show_spinner="Compiling the balancer's loops: once per machine, a few seconds...")
def _warm_up() -> bool:
    kernels.warm_up()
    return True
