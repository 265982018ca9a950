"""The Learn page's parts: pictures (``figures``), the lesson as data (``lesson``), the page's state
and controls (``page``), and Explore's "Teach this layer" button (``page.teach_this_layer``).

Only ``page`` imports Streamlit.
"""
