"""Log lines without the secrets that travel in URLs: the connection key in a
device tunnel's path, and query values (`?token=`, `XSRF-TOKEN=`,
`launch=`), which the ASGI servers' access logs would otherwise write down."""

import logging
import re
from collections.abc import Callable
from typing import Any

TUNNEL_KEY = re.compile(r"(/service/remoteaccess/device/)[^\s/?#\"]+")
QUERY_VALUE = re.compile(r"([?&][^=&\s\"#]+=)[^&\s\"#]+")
HIDDEN = "[redacted]"


def redact(text: str) -> str:
    return QUERY_VALUE.sub(rf"\1{HIDDEN}", TUNNEL_KEY.sub(rf"\1{HIDDEN}", text))


class RedactUrlSecrets(logging.Filter):
    """For every record a handler writes (uvicorn's access lines among them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


ActionLogger = Callable[[Any, str, dict[str, Any]], None]


def redacting_action_logger(action_logger: ActionLogger) -> ActionLogger:
    """daphne's access log, which writes to stdout and not through logging."""

    def log(protocol: Any, action: str, details: dict[str, Any]) -> None:
        action_logger(protocol, action, {**details, "path": redact(str(details.get("path", "")))})

    return log
