import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from endpoints.access import Level, has_access


def test_grant_gives_a_user_read_on_a_device(outsider, device, capsys):
    call_command("grant_remote_access", "--user", "outsider", "--device", "gw-0001", "--level", "read")
    assert "Granted READ on device gw-0001 to user outsider." in capsys.readouterr().out
    assert has_access(outsider, device, Level.READ) and not has_access(outsider, device, Level.ADMIN)


def test_grant_gives_a_group_admin_on_a_device_group(outsider, device, device_group, user_group):
    outsider.groups.add(user_group)
    call_command("grant_remote_access", "--group", "technicians", "--device-group", "Plant A", "--level", "admin")
    assert has_access(User.objects.get(pk=outsider.pk), device, Level.ADMIN)


def test_revoking_read_also_revokes_admin(owner, device, capsys):
    call_command("grant_remote_access", "--user", "owner", "--device", "gw-0001", "--level", "read", "--revoke")
    assert "Revoked READ and ADMIN" in capsys.readouterr().out
    assert not has_access(User.objects.get(pk=owner.pk), device, Level.READ)


def test_revoking_admin_keeps_read(owner, device):
    call_command("grant_remote_access", "--user", "owner", "--device", "gw-0001", "--level", "read")
    call_command("grant_remote_access", "--user", "owner", "--device", "gw-0001", "--level", "admin", "--revoke")
    owner = User.objects.get(pk=owner.pk)
    assert has_access(owner, device, Level.READ) and not has_access(owner, device, Level.ADMIN)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--user", "ghost", "--device", "gw-0001"], "no user ghost"),
        (["--group", "ghosts", "--device", "gw-0001"], "no group ghosts"),
        (["--user", "outsider", "--device", "gw-none"], "no device gw-none"),
        (["--user", "outsider", "--device-group", "Nowhere"], "no device group Nowhere"),
    ],
)
def test_grant_names_what_it_cannot_find(outsider, device, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("grant_remote_access", *args, "--level", "read")


def test_register_device_refuses_a_bad_serial_with_its_reason(db):
    with pytest.raises(CommandError, match="serial: A serial starts with a letter or digit"):
        call_command("register_device", "bad serial")


def test_register_device_refuses_an_unknown_group(db):
    with pytest.raises(CommandError, match="no device group named 'Nowhere'"):
        call_command("register_device", "gw-9", "--group", "Nowhere")


def test_init_admin_creates_one_administrator_once(db, capsys):
    call_command("init_admin")
    out = capsys.readouterr().out
    password = out.split("password:")[1].split()[0]
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    call_command("init_admin")
    assert capsys.readouterr().out == ""
    assert User.objects.filter(is_superuser=True).count() == 1


def test_the_demo_device_gets_an_endpoint_and_a_working_agent_configuration(db, settings, tmp_path):
    from agent.config import load_config
    from endpoints.demo import set_up_demo
    from endpoints.models import Device

    settings.DATA_DIR = tmp_path
    path = set_up_demo("http://127.0.0.1:8123")
    config = load_config(path)
    device = Device.objects.get(serial="demo-gateway")
    assert config.server == "http://127.0.0.1:8123" and config.username == "device_demo-gateway"
    assert device.token_matches(config.password)
    assert config.allow == ["127.0.0.0/8", "[::1]"]
    assert device.endpoints.get().port == 8123
    set_up_demo("http://127.0.0.1:8123")
    assert device.endpoints.count() == 1
