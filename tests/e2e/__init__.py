"""Real-browser tests: Playwright drives headless Chromium against one ``streamlit run app.py`` server."""
