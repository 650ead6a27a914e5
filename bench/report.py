"""Medians, ratios against the baselines of the same run, the goals, the
printed table and the JSON record."""

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.paths import Sample

METRICS = ("throughput_mib_s", "echo_p50_ms", "echo_p99_ms")
HEADINGS = {"throughput_mib_s": "throughput MiB/s", "echo_p50_ms": "echo p50 ms", "echo_p99_ms": "echo p99 ms"}
# The paths under test are named passthrough-<ASGI server>.
SUBJECT = "passthrough"
BASELINES = ("tcp", "websockify")


@dataclass(frozen=True)
class Goal:
    text: str
    metric: str
    baseline: str
    # Bound on subject/baseline; for throughput a floor, for latency a ceiling.
    bound: float
    at_least: bool


GOALS = (
    Goal("throughput >= 0.5x websockify", "throughput_mib_s", "websockify", 0.5, True),
    Goal("echo p50 <= 2x websockify", "echo_p50_ms", "websockify", 2.0, False),
)


def medians(samples: list[Sample]) -> dict[str, dict[str, float]]:
    """Per path, the median over rounds of each per-round figure."""
    paths = dict.fromkeys(sample.path for sample in samples)
    return {
        path: {
            metric: statistics.median(getattr(s, metric) for s in samples if s.path == path)
            for metric in METRICS
        }
        for path in paths
    }


def subjects(table: dict[str, dict[str, float]]) -> list[str]:
    return [path for path in table if path.startswith(SUBJECT)]


def ratios(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each subject's medians divided by each baseline's, same run, keyed
    "subject/baseline"."""
    return {
        f"{subject}/{baseline}": {metric: table[subject][metric] / table[baseline][metric] for metric in METRICS}
        for subject in subjects(table)
        for baseline in BASELINES
    }


def goal_results(table: dict[str, dict[str, float]], ratio_table: dict[str, dict[str, float]]) -> list[dict]:
    results = []
    for subject in subjects(table):
        for goal in GOALS:
            ratio = ratio_table[f"{subject}/{goal.baseline}"][goal.metric]
            passed = ratio >= goal.bound if goal.at_least else ratio <= goal.bound
            results.append({"goal": f"{subject} {goal.text}", "ratio": ratio, "pass": passed})
    return results


def format_table(result: dict) -> str:
    """The printed report of a record made by `record`."""
    widths = [max(len(HEADINGS[m]), 10) for m in METRICS]
    title = f"median of {result['settings']['rounds']} rounds"
    first = max(len(title), *map(len, result["ratios"])) + 2
    header = f"{title:<{first}}" + "".join(f"{HEADINGS[m]:>{w + 2}}" for m, w in zip(METRICS, widths))
    lines = [header, "-" * len(header)]
    for path, values in result["medians"].items():
        lines.append(f"{path:<{first}}" + "".join(f"{values[m]:>{w + 2}.3f}" for m, w in zip(METRICS, widths)))
    lines.append("")
    for label, values in result["ratios"].items():
        lines.append(f"{label:<{first}}" + "".join(f"{values[m]:>{w + 1}.2f}x" for m, w in zip(METRICS, widths)))
    lines.append("")
    for goal in result["goals"]:
        verdict = "pass" if goal["pass"] else "MISS"
        lines.append(f"{goal['goal']:<56}{goal['ratio']:>6.2f}x  {verdict}")
    return "\n".join(lines)


def source_revision() -> dict[str, object]:
    """Which code was measured; read-only git queries, empty outside a checkout."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def host() -> dict[str, object]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}


def run_record(started: str, settings: dict[str, object], **figures: object) -> dict:
    """A run's JSON record: when, with what settings, on which machine and
    code, then its figures."""
    return {"started": started, "finished": now(), "settings": settings, "host": host(),
            "source": source_revision(), **figures}


def record(samples: list[Sample], settings: dict[str, object], started: str) -> dict:
    table = medians(samples)
    ratio_table = ratios(table)
    return run_record(
        started,
        settings,
        medians=table,
        ratios=ratio_table,
        goals=goal_results(table, ratio_table),
        samples=[asdict(sample) for sample in samples],
    )


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
