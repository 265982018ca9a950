"""The Streamlit side of EPLB Explorer, shared by every page.

* ``ui.state``: the sidebar's data and topology controls, kept in session state and the URL -> ``Inputs``;
* ``ui.compute``: cached rebalances and reports keyed on a content digest;
* ``ui.figures``: pure Plotly builders (no Streamlit), tested without a browser;
* ``ui.data``: built-in samples, generated loads, uploads and CSV exports;
* ``ui.topology``: the topology sliders' values and messages in the controls' terms;
* ``ui.explore``: what the Explore page draws (cards and modes, load maps, topology B, downloads);
* ``ui.app_frame``: a page opened by its direct link first on a fresh server still runs inside app.py;
  the balancer's compiled loops are ready before the first page draws.
"""

from ui.app_frame import compiled_loops, use_app_navigation

use_app_navigation()  # a direct link opened first on a fresh server: rerun through app.py's navigation
compiled_loops()  # the first run of a process: numba's loops compiled (or loaded) under a spinner
