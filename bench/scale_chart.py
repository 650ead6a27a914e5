"""PNG charts of the scale and load runs, for the README and reviews."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: render straight to a file
import matplotlib.pyplot as plt  # noqa: E402

SUBJECT = "#1363df"
OTHER = "#8a94a6"
GOAL = "#d1495b"


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_scale_chart(result: dict, path: Path) -> None:
    goal = result["kib_per_session_goal"]
    phases = [(name, result[name]) for name in ("passthrough", "terminal") if result.get(name)]
    figure, (memory, echo) = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = [f"{name}\n({phase['opened']} idle)" for name, phase in phases]
    bars = memory.bar(labels, [phase["kib_per_session"] for _, phase in phases],
                      color=[SUBJECT if name == "passthrough" else OTHER for name, _ in phases])
    memory.bar_label(bars, fmt="%.1f")
    memory.axhline(goal, color=GOAL, linestyle="--", linewidth=1)
    memory.set_title(f"gateway RSS per idle session (KiB; goal <= {goal} for passthrough)",
                     fontsize=9)
    terminal = result.get("terminal")
    if terminal:
        bars = echo.bar(["p50", "p99"], [terminal["echo_p50_ms"], terminal["echo_p99_ms"]], color=SUBJECT)
        echo.bar_label(bars, fmt="%.1f")
        echo.set_title(f"{terminal['opened']} active SSH terminals: echo (ms), "
                       f"{terminal['correct']}/{terminal['sessions']} correct", fontsize=9)
    for axis in (memory, echo):
        axis.spines[["top", "right"]].set_visible(False)
    figure.suptitle(f"one {result['settings']['server']} worker, {result['host']['cpus']} CPUs shared with other work",
                    fontsize=10)
    _save(figure, path)


def write_load_chart(result: dict, path: Path) -> None:
    intervals = result["intervals"]
    seconds = [row["seconds"] for row in intervals]
    figure, (echo, memory, held) = plt.subplots(1, 3, figsize=(13, 3.6))
    echo.plot(seconds, [row["echo_p50_ms"] for row in intervals], marker="o", color=SUBJECT, label="p50")
    echo.plot(seconds, [row["echo_p99_ms"] for row in intervals], marker="o", color=OTHER, label="p99")
    echo.set_title("echo per interval (ms)", fontsize=9)
    echo.legend(fontsize=8)
    memory.plot(seconds, [row["rss_kib"] / 1024 for row in intervals], marker="o", color=SUBJECT)
    memory.set_title("gateway RSS (MiB)", fontsize=9)
    fds = memory.twinx()
    fds.plot(seconds, [row["fds"] for row in intervals], marker=".", color=OTHER)
    fds.set_ylabel("open fds", fontsize=8, color=OTHER)
    held.plot(seconds, [row["held"] for row in intervals], marker="o", color=SUBJECT, label="sessions held")
    held.plot(seconds, [row["errors"] for row in intervals], marker="x", color=GOAL, label="errors (total)")
    held.set_title("sessions held, errors", fontsize=9)
    held.legend(fontsize=8)
    for axis in (echo, memory, held):
        axis.set_xlabel("seconds", fontsize=8)
        axis.spines[["top"]].set_visible(False)
    settings = result["settings"]
    figure.suptitle(f"{settings['sessions']} SSH terminals for {settings['seconds']} s on one {settings['server']} "
                    f"worker, {result['host']['cpus']} CPUs shared with other work", fontsize=10)
    _save(figure, path)
