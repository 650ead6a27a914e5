"""What the benchmarks' command lines share."""

import argparse
from pathlib import Path

from portal.asgi_servers import SERVERS

RESULTS = Path(__file__).resolve().parent / "results"


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def servers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SERVERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SERVERS)}")
    return names


def result_path(name: str) -> Path:
    return RESULTS / f"{name}.json"
