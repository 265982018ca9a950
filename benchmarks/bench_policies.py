"""Benchmark every EPLB policy: balancedness, gap to the limit, runtime. See eplb/bench.py.

Usage: PYTHONPATH=. python benchmarks/bench_policies.py [--quick] [--markdown] [--only next-window] [--policies a,b] [--repeats N]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eplb.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
