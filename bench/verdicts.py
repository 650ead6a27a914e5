"""The printed table of a scale or load run: figures, with their goal and
pass / MISS beside the ones that have a goal."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    label: str
    figure: str
    goal: str = ""
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("pass" if self.passed else "MISS")


def format_rows(title: str, rows: list[Row]) -> str:
    label_width = max(len(title), *(len(row.label) for row in rows))
    figure_width = max(len(row.figure) for row in rows)
    goal_width = max(len(row.goal) for row in rows)
    lines = [title, "-" * (label_width + figure_width + goal_width + 10)]
    for row in rows:
        line = f"{row.label:<{label_width}}  {row.figure:>{figure_width}}  {row.goal:<{goal_width}}  {row.verdict}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def goals(rows: list[Row]) -> list[dict]:
    """The rows with a goal, for the JSON record; an indented row's label
    is prefixed with its heading's."""
    found = []
    heading = ""
    for row in rows:
        label = row.label.strip()
        if not row.label.startswith(" "):
            heading = label
        elif heading:
            label = f"{heading}: {label}"
        if row.passed is not None:
            found.append({"label": label, "figure": row.figure, "goal": row.goal, "pass": row.passed})
    return found
