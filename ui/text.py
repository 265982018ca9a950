"""Text that a user, a link or a file supplied, made safe to show through Streamlit's Markdown.

Every file name, key, cell, link value or label that did not come from the project
goes through ``escape`` before it reaches ``st.markdown``, a caption, a message or
chart text, so it shows as the characters it holds and never as a link, an image,
emphasis or KaTeX.
"""

from __future__ import annotations

MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()<>#+-.!|~$:=^\"'&")
"""ASCII punctuation that Markdown, Streamlit's colour/emoji directives or KaTeX may read."""


def escape(text: object, max_chars: int = 200) -> str:
    """``text`` as literal Markdown: special characters backslash-escaped, line breaks as spaces, long text cut.

    max_chars: longest text kept (user-supplied names can be arbitrarily long); the cut is marked with "...".
    """
    flat = " ".join(str(text).split())
    if len(flat) > max_chars:
        flat = flat[: max_chars - 3] + "..."
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in flat)
