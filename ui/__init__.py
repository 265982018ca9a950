"""The Streamlit side of EPLB Explorer, shared by every page.

* ``ui.state``: the sidebar's data and topology controls, kept in session state and the URL -> ``Inputs``;
* ``ui.compute``: cached rebalances and reports keyed on a content digest;
* ``ui.figures``: pure Plotly builders (no Streamlit), tested without a browser;
* ``ui.data``: built-in samples, generated loads, uploads and CSV exports;
* ``ui.topology``: the topology sliders' values and messages in the controls' terms;
* ``ui.explore``: what the Explore page draws (cards and modes, load maps, topology B, downloads);
* ``ui.app_frame``: a page opened by its direct link first on a fresh server still runs inside app.py.
"""

from ui.app_frame import use_app_navigation

use_app_navigation()  # a direct link opened first on a fresh server: rerun through app.py's navigation
