"""Keeps every page inside app.py's navigation, however the app is first opened.

Streamlit treats a ``pages/`` folder beside the entry script as a legacy multipage app until
some session has called ``st.navigation``. So on a freshly started server, the first browser
that opens a direct link (``/learn``, ``/replay``) gets that page run on its own, without
app.py: Streamlit's file-name navigation ("app", "compare", ...), no page config. Every page
imports ``ui`` first, so ``ui/__init__.py`` calls ``use_app_navigation()``: it switches
Streamlit to ``st.navigation`` for good and reruns, and the rerun goes through app.py to the
same page (a legacy page and its ``st.Page`` share a URL path, hence a page hash).
"""

from __future__ import annotations

import streamlit as st


def use_app_navigation() -> None:
    """Leave Streamlit's legacy ``pages/`` mode and rerun through app.py; a no-op once any session ran app.py."""
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", None):
        PagesManager.uses_pages_directory = False  # what st.navigation sets, for every session
        st.rerun()
