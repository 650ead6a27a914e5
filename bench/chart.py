"""A PNG of a run's medians beside its baselines, for the README and reviews."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render straight to a file
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (("throughput_mib_s", "throughput (MiB/s, higher is better)"),
          ("echo_p50_ms", "1-byte echo p50 (ms, lower is better)"))


def write_chart(result: dict, path: Path) -> None:
    table = result["medians"]
    paths = list(table)
    figure, axes = plt.subplots(1, len(PANELS), figsize=(10, 3.6))
    for axis, (metric, title) in zip(axes, PANELS):
        values = [table[name][metric] for name in paths]
        bars = axis.bar(paths, values, color=["#8a94a6" if name != "passthrough" else "#1363df" for name in paths])
        axis.bar_label(bars, fmt="%.3g")
        axis.set_title(title, fontsize=10)
        axis.spines[["top", "right"]].set_visible(False)
    settings = result["settings"]
    figure.suptitle(f"median of {settings.get('rounds')} rounds, {settings.get('size_mib')} MiB each way, "
                    f"{result['host']['cpus']} CPUs", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
