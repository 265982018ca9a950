"""The Streamlit side of EPLB Explorer, shared by every page.

* ``ui.state``: the sidebar's data and topology controls, kept in session state and the URL -> ``Inputs``;
* ``ui.compute``: cached rebalances and reports keyed on a content digest;
* ``ui.figures``: pure Plotly builders (no Streamlit), tested without a browser;
* ``ui.data``: built-in samples, generated loads, uploads and CSV exports.
"""

from ui.app_frame import use_app_navigation

use_app_navigation()  # a direct link opened first on a fresh server: rerun through app.py's navigation
