"""``eplb-explorer``: start the EPLB Explorer app (``streamlit run app.py``) from wherever the package is.

The app travels with the package as ``eplb_explorer`` (app.py, pages/, ui/,
sample_data/ and .streamlit/config.toml); in a checkout of the repository it is the
repository itself. Streamlit is not imported here: it runs in its own process, and
without it installed this says how to install it. Arguments pass on to ``streamlit
run`` (e.g. ``eplb-explorer --server.port 8600``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path


def app_dir() -> Path | None:
    """The folder holding app.py: the installed ``eplb_explorer`` package, else this checkout's root."""
    spec = importlib.util.find_spec("eplb_explorer")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "app.py").exists():
            return Path(location)
    root = Path(__file__).resolve().parents[1]
    return root if (root / "app.py").exists() and (root / "pages").is_dir() else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    where = app_dir()
    if where is None:
        print("eplb-explorer: error: the app's files (app.py, pages/, ui/) are not installed with this package; "
              "reinstall eplb-explorer", file=sys.stderr)
        return 2
    if importlib.util.find_spec("streamlit") is None:
        print("eplb-explorer: error: the app needs its packages, which are not installed: "
              "pip install \"eplb-explorer[app]\"", file=sys.stderr)
        return 2
    os.chdir(where)  # Streamlit reads .streamlit/config.toml from the working directory
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", "app.py", *argv])
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    raise SystemExit(main())
