"""SmartREST lines of the device control channel: CSV with RFC 4180 quoting.

Plain Python, no Django, so agents and tests can use it as it is.
"""

import csv
import io

MAX_LINE = 8 * 1024
CONNECT = "c8y_RemoteAccessConnect"


class BadLine(ValueError):
    """A line that cannot be parsed; the text says why."""


def parse(line: str) -> list[str]:
    if len(line.encode("utf-8", "surrogatepass")) > MAX_LINE:
        raise BadLine(f"line longer than {MAX_LINE} bytes")
    line = line.rstrip("\r\n")
    if not line.strip():
        raise BadLine("empty line")
    if "\n" in line or "\r" in line:
        raise BadLine("more than one line in a field")
    try:
        rows = list(csv.reader([line], strict=True))
    except csv.Error as exc:
        raise BadLine(f"not a CSV line ({exc})") from None
    if len(rows) != 1:
        raise BadLine("not a CSV line")
    return [field.strip() for field in rows[0]]


def format_line(*fields: object) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([str(field) for field in fields])
    return buffer.getvalue()
