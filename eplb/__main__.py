"""``python -m eplb``: see ``eplb.cli``."""

from .cli import main

raise SystemExit(main())
