"""`python -m bench [SUITE [options]]`: run one benchmark suite, or without
a suite every one but the long load test, each with its defaults.

Every suite starts what it measures on loopback, prints a table with its
goals (pass / MISS) and writes JSON and a PNG chart to bench/results/.
"""

import importlib
import subprocess
import sys
from collections.abc import Sequence

# In the order a full run takes them; `load` runs only when named.
SUITES = ("passthrough", "terminal", "slowreader", "crossworker", "scale")
ON_REQUEST = ("load",)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        print(f"suites: {', '.join(SUITES + ON_REQUEST)}; `python -m bench SUITE --help` for its options")
        return
    if args and not args[0].startswith("-"):
        suite, options = args[0], args[1:]
        if suite not in SUITES + ON_REQUEST:
            sys.exit(f"unknown suite {suite!r}; choose from {', '.join(SUITES + ON_REQUEST)}")
        importlib.import_module(f"bench.{suite}").main(options)
        return
    if args:
        sys.exit("options belong to a suite: python -m bench SUITE --help")
    failed = []
    for suite in SUITES:
        print(f"\n=== {suite}", flush=True)
        # A process each: Django is set up once per process, on each suite's
        # own temporary database.
        if subprocess.run([sys.executable, "-m", "bench", suite]).returncode != 0:
            failed.append(suite)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
