"""SmartREST lines of the control channel: CSV records with RFC 4180 quoting.

Built and read with the :mod:`csv` module, never by splitting on commas: a
failure reason like ``cannot connect to "plc", port 23`` must arrive intact.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

OPERATION_FRAGMENT = "c8y_RemoteAccessConnect"


class SmartRestError(ValueError):
    """A line that is not a well-formed message we understand."""


def parse_lines(text: str) -> list[list[str]]:
    """Split a frame into records (one per line; blank lines skipped)."""
    try:
        return [row for row in csv.reader(io.StringIO(text), strict=True) if row and any(row)]
    except csv.Error as exc:
        raise SmartRestError(f"malformed SmartREST line: {exc}") from None


def format_line(*fields: str, quote_last: bool = False) -> str:
    """One record, without a line terminator.

    ``quote_last`` always quotes the final field, as the contract spells
    reasons (``505,<id>,"<reason>"``); quoting only when needed would parse
    the same, but some readers of these lines are humans grepping logs.
    """
    head = io.StringIO()
    csv.writer(head, lineterminator="").writerow(fields[:-1] if quote_last else fields)
    if not quote_last:
        return head.getvalue()
    tail = io.StringIO()
    csv.writer(tail, lineterminator="", quoting=csv.QUOTE_ALL).writerow(fields[-1:])
    return f"{head.getvalue()},{tail.getvalue()}" if len(fields) > 1 else tail.getvalue()


@dataclass(frozen=True)
class ConnectRequest:
    """A ``530`` line: connect ``hostname:port`` through tunnel ``connection_key``."""

    serial: str
    hostname: str
    port: int
    connection_key: str
    operation_id: str | None  # None: an old server sent five fields


def parse_connect(fields: list[str]) -> ConnectRequest:
    # Error messages leave the fields out: they hold the connection key.
    if not fields or fields[0] != "530":
        raise SmartRestError(f"not a connect request: {fields[:1]!r}")
    if len(fields) < 5:
        raise SmartRestError(f"connect request with {len(fields)} fields, expected 5 or 6")
    serial, hostname, port_text, key = (f.strip() for f in fields[1:5])
    operation_id = fields[5].strip() if len(fields) > 5 and fields[5].strip() else None
    if not hostname:
        raise SmartRestError("connect request without a host name")
    if not key:
        raise SmartRestError("connect request without a connection key")
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise SmartRestError(f"connect request with invalid port {port_text!r}")
    return ConnectRequest(serial, hostname, port, key, operation_id)


def executing(operation_id: str | None) -> str:
    if operation_id is None:
        return format_line("501", OPERATION_FRAGMENT)
    return format_line("504", operation_id)


def successful(operation_id: str | None) -> str:
    if operation_id is None:
        return format_line("503", OPERATION_FRAGMENT)
    return format_line("506", operation_id)


def failed(operation_id: str | None, reason: str) -> str:
    # A reason spread over lines would be read as several records.
    reason = " ".join(reason.split())
    if operation_id is None:
        return format_line("502", OPERATION_FRAGMENT, reason, quote_last=True)
    return format_line("505", operation_id, reason, quote_last=True)
