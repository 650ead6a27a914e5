"""PNG charts of a run's figures, for the README and reviews."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render straight to a file
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (("throughput_mib_s", "throughput (MiB/s, higher is better)"),
          ("echo_p50_ms", "1-byte echo p50 (ms, lower is better)"))
SUBJECT_COLOUR = "#1363df"
BASELINE_COLOUR = "#8a94a6"


def colours(names: list[str], subject: str) -> list[str]:
    return [SUBJECT_COLOUR if name.startswith(subject) else BASELINE_COLOUR for name in names]


def save(figure, path: Path) -> None:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_chart(result: dict, path: Path) -> None:
    """The passthrough suite: throughput and echo of every path."""
    table = result["medians"]
    paths = list(table)
    figure, axes = plt.subplots(1, len(PANELS), figsize=(11, 3.8))
    for axis, (metric, title) in zip(axes, PANELS):
        bars = axis.bar(paths, [table[name][metric] for name in paths], color=colours(paths, "passthrough"))
        axis.bar_label(bars, fmt="%.3g")
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelsize=8)
        axis.spines[["top", "right"]].set_visible(False)
    settings = result["settings"]
    figure.suptitle(f"median of {settings.get('rounds')} rounds, {settings.get('size_mib')} MiB each way, "
                    f"{result['host']['cpus']} CPUs", fontsize=10)
    save(figure, path)


def bars(path: Path, title: str, values: dict[str, float], limit: float | None = None) -> None:
    """One figure per name, with the goal as a dashed line."""
    figure, axis = plt.subplots(figsize=(6, 3.6))
    names = list(values)
    drawn = axis.bar(names, [values[name] for name in names], color=SUBJECT_COLOUR)
    axis.bar_label(drawn, fmt="%.3g")
    if limit is not None:
        axis.axhline(limit, color="#d33", linestyle="--", linewidth=1, label=f"goal {limit:g}")
        axis.legend(fontsize=8)
    axis.set_title(title, fontsize=10)
    axis.spines[["top", "right"]].set_visible(False)
    save(figure, path)
