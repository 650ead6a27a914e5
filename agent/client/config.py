"""The client's configuration file: the server and the technician's credentials.

TOML, read with :mod:`tomllib` and written by hand like the agent's, mode
0600 and replaced atomically since it holds a token or a password.
``$XDG_CONFIG_HOME/remote-access-client/client.toml`` unless told otherwise.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from agent.config import ConfigError, config_home, normalize_server_url, read_toml, toml_string, write_private_file
from agent.transport import basic_authorization, build_ssl_context

APP_DIR = "remote-access-client"
CONFIG_NAME = "client.toml"
CONFIG_ENV = "REMOTE_ACCESS_CLIENT_CONFIG"


class ConfigNotFound(ConfigError):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no configuration at {path}: run `remote-access-client login --server URL --token TOKEN` first"
        )


@dataclass(frozen=True)
class ClientConfig:
    server: str
    token: str = ""
    username: str = ""
    password: str = ""
    insecure: bool = False
    ca_file: str = ""

    @property
    def authorization(self) -> str:
        if self.token:
            return f"Bearer {self.token}"
        return basic_authorization(self.username, self.password)

    def ssl_context(self) -> ssl.SSLContext | None:
        try:
            return build_ssl_context(self.insecure, self.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the CA file {self.ca_file}: {exc}") from None


def default_config_path() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return config_home() / APP_DIR / CONFIG_NAME


def load_config(path: Path) -> ClientConfig:
    data = read_toml(path, ConfigNotFound)

    def text(key: str) -> str:
        value = data.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(f"invalid configuration at {path}: `{key}` must be a string")
        return value

    insecure = data.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"invalid configuration at {path}: `insecure` must be true or false")
    if not text("server"):
        raise ConfigError(f"invalid configuration at {path}: no `server`")
    config = ClientConfig(
        server=normalize_server_url(text("server")),
        token=text("token"),
        username=text("username"),
        password=text("password"),
        insecure=insecure,
        ca_file=text("ca_file"),
    )
    if not config.token and not (config.username and config.password):
        raise ConfigError(f"invalid configuration at {path}: it needs `token`, or `username` and `password`")
    return config


def format_config(config: ClientConfig) -> str:
    if config.token:
        credentials = f"token = {toml_string(config.token)}\n"
    else:
        credentials = f"username = {toml_string(config.username)}\npassword = {toml_string(config.password)}\n"
    lines = [
        "# remote-access-client configuration, written by `remote-access-client login`.\n",
        "# It holds your credentials: keep it readable by you only.\n",
        f"server = {toml_string(config.server)}\n",
        credentials,
        f"insecure = {'true' if config.insecure else 'false'}\n",
    ]
    if config.ca_file:
        lines.append(f"ca_file = {toml_string(config.ca_file)}\n")
    return "".join(lines)


def save_config(config: ClientConfig, path: Path) -> None:
    """Write ``config`` to ``path`` with mode 0600, atomically."""
    write_private_file(path, format_config(config))
