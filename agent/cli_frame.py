"""What ``remote-access-agent`` and ``remote-access-client`` share around a
command: logging to stderr for the run, and a failure told in one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_command(
    command: Callable[[], int],
    *,
    logger: logging.Logger,
    failures: tuple[type[Exception], ...],
    formatter: logging.Formatter,
    level: int,
    library_level: int,
) -> int:
    """Run ``command`` and return its exit code: 1 after logging one of
    ``failures``, 130 on Ctrl-C. ``library_level`` is the websockets library's."""
    undo_logging = _log_to_stderr(formatter, level, library_level)
    try:
        return command()
    except failures as exc:
        logger.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        undo_logging()


def _log_to_stderr(formatter: logging.Formatter, level: int, library_level: int) -> Callable[[], None]:
    """Log to stderr; return what undoes it (main() may run many times in one process, as in tests)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    library = logging.getLogger("websockets")
    saved = root.level, library.level
    root.addHandler(handler)
    root.setLevel(level)
    library.setLevel(library_level)

    def undo() -> None:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        library.setLevel(saved[1])

    return undo
