"""EPLB Explorer: the entry point. It only lists the pages and runs the chosen one.

    streamlit run app.py

Add a page by adding one line to PAGES.
"""

import streamlit as st

PAGES = [
    st.Page("pages/explore.py", title="Explore", icon=":material/grid_view:", default=True),
    st.Page("pages/compare.py", title="Compare policies", icon=":material/compare_arrows:"),
    st.Page("pages/sweep.py", title="What-if sweep", icon=":material/tune:"),
    st.Page("pages/replay.py", title="Replay a trace", icon=":material/timeline:"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
]

st.set_page_config(page_title="EPLB Explorer", page_icon="⚖️", layout="wide")
try:
    st.navigation(PAGES).run()
finally:  # imported after the page, which imports ui first (ui.app_frame's other half)
    from ui.app_frame import freeze_startup_objects

    freeze_startup_objects()  # once per process, the page's modules loaded: see its docstring
