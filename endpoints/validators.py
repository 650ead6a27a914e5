import ipaddress
import re

from django.core.exceptions import ValidationError

# RFC 1123 labels: letters, digits and inner hyphens, 63 characters each;
# underscores are common in LAN names (mDNS, Windows), so they are allowed.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def validate_hostname(value: str) -> None:
    """A DNS name or an IPv4/IPv6 literal (IPv6 optionally in brackets)."""
    candidate = value.strip()
    if not candidate:
        raise ValidationError("Enter a host name or an IP address.", code="required")
    literal = candidate[1:-1] if candidate.startswith("[") and candidate.endswith("]") else candidate
    try:
        ipaddress.ip_address(literal)
        return
    except ValueError:
        pass
    if ":" in candidate:
        raise ValidationError(
            "%(value)s is not a valid IPv6 address.", code="invalid", params={"value": value}
        )
    name = candidate[:-1] if candidate.endswith(".") else candidate
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValidationError(
            "%(value)s is not a valid host name or IP address: use letters, digits, "
            "hyphens and dots (for example plc-1.local or 192.168.1.10).",
            code="invalid",
            params={"value": value},
        )
    if re.fullmatch(r"[0-9.]+", name):
        raise ValidationError(
            "%(value)s is not a valid IPv4 address.", code="invalid", params={"value": value}
        )


def validate_serial(value: str) -> None:
    if not SERIAL.match(value):
        raise ValidationError(
            "A serial starts with a letter or digit and holds only letters, digits, "
            "'.', '_', ':' and '-' (at most 128 characters).",
            code="invalid",
        )
