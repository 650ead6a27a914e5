"""The configuration file and ``remote-access-agent register``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent import cli
from agent.config import AgentConfig, ConfigError, default_config_path, load_config, save_config
from agent_fakes import REPO_ROOT, SERIAL, USERNAME, RegistrationServer


def register_args(server: RegistrationServer, path: Path, otp: str | None = None) -> list[str]:
    return [
        "register",
        "--server",
        server.url,
        "--device-id",
        SERIAL,
        "--one-time-password",
        otp or server.one_time_password,
        "--config",
        str(path),
    ]


def test_register_stores_the_issued_credentials_in_a_file_only_the_owner_can_read(
    registration_server: RegistrationServer, tmp_path: Path
) -> None:
    path = tmp_path / "new-dir" / "agent.toml"
    assert cli.main(register_args(registration_server, path)) == 0

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert registration_server.requests == [
        {"deviceId": SERIAL, "oneTimePassword": registration_server.one_time_password}
    ]
    config = load_config(path)
    assert config == AgentConfig(
        server=registration_server.url,
        device_id=SERIAL,
        username=USERNAME,
        password=registration_server.issued_password,
        allow=[],
    )
    assert "allow = []" in path.read_text()


def test_register_with_a_used_one_time_password_fails_with_a_clear_message(
    registration_server: RegistrationServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(register_args(registration_server, tmp_path / "first.toml")) == 0
    capsys.readouterr()

    path = tmp_path / "second.toml"
    assert cli.main(register_args(registration_server, path)) == 1
    err = capsys.readouterr().err
    assert "refused the one-time password" in err
    assert "wrong, already used or expired" in err
    assert not path.exists()


def test_registering_again_keeps_the_allow_list(registration_server: RegistrationServer, tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    save_config(
        AgentConfig(
            server="http://old",
            device_id=SERIAL,
            username="x",
            password="y",
            allow=["127.0.0.1:22", "[::1]:22"],
            ping_interval=12,
        ),
        path,
    )
    assert cli.main(register_args(registration_server, path)) == 0
    config = load_config(path)
    assert config.allow == ["127.0.0.1:22", "[::1]:22"]
    assert config.ping_interval == 12
    assert config.password == registration_server.issued_password


def test_register_refuses_to_spend_the_password_over_a_broken_allow_list(
    registration_server: RegistrationServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('allow = ["10.0.0.0/33"]\n')
    assert cli.main(register_args(registration_server, path)) == 1
    assert "'10.0.0.0/33'" in capsys.readouterr().err
    assert registration_server.requests == []


def test_the_default_configuration_lives_under_xdg_config_home(
    registration_server: RegistrationServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "remote-access-agent" / "agent.toml"
    assert default_config_path() == expected
    args = register_args(registration_server, expected)[:-2]
    assert cli.main(args) == 0
    assert load_config(expected).username == USERNAME

    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_config_path() == tmp_path / "home" / ".config" / "remote-access-agent" / "agent.toml"


def test_strings_that_need_escaping_survive_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    tricky = 'a"b\\c\nd\te\x01f\x7fg ünï 🚀 \'single\' """'
    config = AgentConfig(
        server="https://gw.example:8443/prefix",
        device_id=tricky,
        username="t/device_1",
        password=tricky,
        allow=["plc.local:23", "*"],
    )
    save_config(config, path)
    assert load_config(path) == config
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_configuration_with_a_bad_allow_list_entry_is_refused_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    save_config(
        AgentConfig(
            server="http://127.0.0.1:1", device_id="d", username="u", password="p", allow=["127.0.0.1", "host:99999"]
        ),
        path,
    )
    with pytest.raises(ConfigError, match="'host:99999'"):
        load_config(path)


def test_run_without_a_configuration_tells_how_to_register(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    result = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"no configuration at {path}: run `remote-access-agent register" in result.stderr
