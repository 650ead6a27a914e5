"""The agent's configuration file: where it lives, reading and writing it.

The file holds the device's password, so it is written with mode 0600 and
replaced atomically (a crash mid-write must not leave a device without its
credentials). It is TOML: read with :mod:`tomllib`, written by hand since the
standard library has no TOML writer and the format we write is tiny.
"""

from __future__ import annotations

import math
import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from agent.allowlist import AllowList

APP_DIR = "remote-access-agent"
CONFIG_NAME = "agent.toml"
DEFAULT_PING_INTERVAL = 30.0


class ConfigError(Exception):
    """The configuration file is missing or cannot be used."""


class ConfigNotFound(ConfigError):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no configuration at {path}: run `remote-access-agent register "
            f"--server URL --device-id SERIAL --one-time-password OTP` first"
        )
        self.path = path


@dataclass
class AgentConfig:
    server: str
    device_id: str
    username: str
    password: str
    allow: list[str] = field(default_factory=list)
    ping_interval: float = DEFAULT_PING_INTERVAL

    def allow_list(self) -> AllowList:
        return AllowList.parse(self.allow)


def config_home() -> Path:
    """``$XDG_CONFIG_HOME``, else ``~/.config``."""
    base = os.environ.get("XDG_CONFIG_HOME")
    # XDG says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base)


def default_config_path() -> Path:
    return config_home() / APP_DIR / CONFIG_NAME


def normalize_server_url(url: str) -> str:
    """Return the server's base URL as ``http(s)://host[:port][/prefix]``.

    A bare host name means HTTPS: a device should never send its password in
    clear text by accident.
    """
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("http", "https"):
        raise ConfigError(f"server URL must start with http:// or https://: {url!r}")
    if not parts.hostname:
        raise ConfigError(f"server URL has no host: {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"server URL must not have a query or fragment: {url!r}")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def read_toml(path: Path, not_found: type[ConfigError] | None = None) -> dict:
    """The file's TOML table; ConfigError (or `not_found`'s) with the reason."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise (not_found or ConfigNotFound)(path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid configuration at {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration at {path}: {exc.strerror}") from None


def load_config(path: Path) -> AgentConfig:
    """Read and validate the file; raise :class:`ConfigNotFound` or :class:`ConfigError`."""
    data = read_toml(path)

    def text(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"invalid configuration at {path}: `{key}` must be a non-empty string")
        return value

    allow = data.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(e, str) for e in allow):
        raise ConfigError(f"invalid configuration at {path}: `allow` must be a list of strings")
    ping_interval = data.get("ping_interval", DEFAULT_PING_INTERVAL)
    if (
        isinstance(ping_interval, bool)
        or not isinstance(ping_interval, (int, float))
        or not math.isfinite(ping_interval)
        or ping_interval <= 0
    ):
        raise ConfigError(f"invalid configuration at {path}: `ping_interval` must be a positive number of seconds")

    config = AgentConfig(
        server=normalize_server_url(text("server")),
        device_id=text("device_id"),
        username=text("username"),
        password=text("password"),
        allow=list(allow),
        ping_interval=float(ping_interval),
    )
    try:
        # Fail at start-up, naming the bad entry, rather than on the first request.
        config.allow_list()
    except ValueError as exc:
        raise ConfigError(f"invalid configuration at {path}: {exc}") from None
    return config


def toml_string(value: str) -> str:
    """Quote ``value`` as a TOML basic string."""
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            # TOML forbids raw control characters in basic strings.
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_config(config: AgentConfig) -> str:
    if config.allow:
        allow = "[\n" + "".join(f"    {toml_string(e)},\n" for e in config.allow) + "]"
    else:
        allow = "[]"
    ping = repr(float(config.ping_interval))
    return (
        "# remote-access-agent configuration, written by `remote-access-agent register`.\n"
        "# It holds the device's password: keep it readable by the agent's user only.\n"
        f"server = {toml_string(config.server)}\n"
        f"device_id = {toml_string(config.device_id)}\n"
        f"username = {toml_string(config.username)}\n"
        f"password = {toml_string(config.password)}\n"
        "\n"
        "# Seconds between keepalive pings on the control channel and tunnels.\n"
        f"ping_interval = {ping}\n"
        "\n"
        "# Targets the server may ask this device to connect to: host, address or\n"
        '# CIDR, each with an optional ":port"; "*" is any host; an empty list allows all.\n'
        '# Example: allow = ["127.0.0.1:22", "192.168.1.0/24:5900", "plc.local:23", "[::1]:22"]\n'
        f"allow = {allow}\n"
    )


def save_config(config: AgentConfig, path: Path) -> None:
    """Write ``config`` to ``path`` with mode 0600, atomically."""
    write_private_file(Path(path), format_config(config))


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically: a crash leaves
    the old file or the new one, never half of one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file 0600 whatever the umask, so a secret in it is
    # never readable by others, not even for an instant.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
