"""The terminal benchmark's figures: medians, the browser page against the
direct asyncssh session of the same run, the goals, the table, the JSON
record and the chart."""

import statistics
from dataclasses import asdict
from pathlib import Path

from bench.chart import colours, plt, save
from bench.paths import percentile
from bench.report import run_record
from bench.terminal_measures import TerminalSample
from bench.verdicts import Row, format_rows, goals

SUBJECT = "browser page"
BASELINE = "asyncssh direct"
HEADINGS = {
    "throughput_mb_s": "cat MB/s",
    "echo_p50_ms": "echo p50 ms",
    "echo_p99_ms": "echo p99 ms",
    "connect_p50_ms": "prompt p50 ms",
    "connect_p99_ms": "prompt p99 ms",
}
# The goals.
THROUGHPUT_MB_S = 150.0
THROUGHPUT_RATIO = 0.9  # DESIGN.md, "What a terminal can carry"
ECHO_ADDED_MS = 1.0
CONNECT_ADDED_MS = 150.0


def medians(samples: list[TerminalSample]) -> dict[str, dict[str, float]]:
    """Per path, the median over rounds of each round's output and echo
    figures; the Connect percentiles over every try of every round."""
    table = {}
    for path in dict.fromkeys(sample.path for sample in samples):
        mine = [sample for sample in samples if sample.path == path]
        connects = [seconds for sample in mine for seconds in sample.connect_ms]
        table[path] = {
            "throughput_mb_s": statistics.median(s.throughput_mb_s for s in mine),
            "echo_p50_ms": statistics.median(s.echo_p50_ms for s in mine),
            "echo_p99_ms": statistics.median(s.echo_p99_ms for s in mine),
            "connect_p50_ms": statistics.median(connects),
            "connect_p99_ms": percentile(connects, 0.99),
        }
    return table


def goal_rows(table: dict[str, dict[str, float]]) -> list[Row]:
    page, direct = table[SUBJECT], table[BASELINE]
    ratio = page["throughput_mb_s"] / direct["throughput_mb_s"]
    echo_added = page["echo_p50_ms"] - direct["echo_p50_ms"]
    connect_added = page["connect_p50_ms"] - direct["connect_p50_ms"]
    return [
        Row("cat output on the page", f"{page['throughput_mb_s']:.1f} MB/s", f">= {THROUGHPUT_MB_S:g} MB/s (issue)",
            page["throughput_mb_s"] >= THROUGHPUT_MB_S),
        Row("cat output, page / direct", f"{ratio:.2f}x", f">= {THROUGHPUT_RATIO:g}x direct",
            ratio >= THROUGHPUT_RATIO),
        Row("echo p50 added over direct", f"{echo_added:+.3f} ms", f"<= {ECHO_ADDED_MS:g} ms",
            echo_added <= ECHO_ADDED_MS),
        Row("Connect to prompt p50 beyond the shell's own start-up", f"{connect_added:+.0f} ms",
            f"<= {CONNECT_ADDED_MS:g} ms", connect_added <= CONNECT_ADDED_MS),
    ]


def record(samples: list[TerminalSample], settings: dict[str, object], started: str) -> dict:
    table = medians(samples)
    page, direct = table[SUBJECT], table[BASELINE]
    return run_record(
        started,
        settings,
        medians=table,
        ratios={f"{SUBJECT}/{BASELINE}": {metric: page[metric] / direct[metric] for metric in HEADINGS}},
        added={f"{SUBJECT}-{BASELINE}": {metric: page[metric] - direct[metric] for metric in HEADINGS}},
        goals=goals(goal_rows(table)),
        samples=[asdict(sample) for sample in samples],
    )


def format_table(result: dict) -> str:
    """The printed report of a record made by `record`."""
    settings = result["settings"]
    title = f"median of {settings['rounds']} rounds"
    header = f"{title:<34}" + "".join(f"{heading:>15}" for heading in HEADINGS.values())
    lines = [header, "-" * len(header)]
    for path, values in result["medians"].items():
        lines.append(f"{path:<34}" + "".join(f"{values[metric]:>15.3f}" for metric in HEADINGS))
    lines.append("")
    for label, values in result["ratios"].items():
        lines.append(f"{label:<34}" + "".join(f"{values[metric]:>14.2f}x" for metric in HEADINGS))
    for label, values in result["added"].items():
        lines.append(f"{label:<34}" + "".join(f"{values[metric]:>+15.3f}" for metric in HEADINGS))
    lines.append("")
    rows = [Row(goal["label"], goal["figure"], goal["goal"], goal["pass"]) for goal in result["goals"]]
    lines.append(format_rows("goals", rows))
    return "\n".join(lines)


def write_chart(result: dict, path: Path) -> None:
    """Output, echo and Connect side by side, each goal as a dashed line."""
    table = result["medians"]
    direct = table[BASELINE]
    panels = (
        ("throughput_mb_s", "cat output (MB/s, higher is better)", THROUGHPUT_MB_S),
        ("echo_p50_ms", "keystroke echo p50 (ms, lower is better)", direct["echo_p50_ms"] + ECHO_ADDED_MS),
        ("connect_p50_ms", "Connect to prompt p50 (ms, lower is better)",
         direct["connect_p50_ms"] + CONNECT_ADDED_MS),
    )
    paths = list(table)
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 3.8))
    for axis, (metric, title, goal) in zip(axes, panels):
        bars = axis.bar(paths, [table[name][metric] for name in paths], color=colours(paths, SUBJECT))
        axis.bar_label(bars, fmt="%.3g")
        axis.axhline(goal, color="#d33", linestyle="--", linewidth=1, label=f"goal {goal:.3g}")
        axis.legend(fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.spines[["top", "right"]].set_visible(False)
    settings = result["settings"]
    figure.suptitle(f"SSH terminal: median of {settings['rounds']} rounds, cat of {settings['size_mib']} MiB, "
                    f"{result['host']['cpus']} CPUs", fontsize=10)
    save(figure, path)
