import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from endpoints.models import Device, hash_token
from portal import throttle

URL = "/service/remoteaccess/registration"


def register(client, serial, otp):
    return client.post(URL, json.dumps({"deviceId": serial, "oneTimePassword": otp}), content_type="application/json")


@pytest.fixture
def awaiting(db):
    device = Device.objects.create(serial="gw-new", name="New gateway")
    device.issue_one_time_password(timedelta(hours=24), "otp-12345678")
    device.save()
    return device


def test_a_device_registers_once_with_its_one_time_password(client, awaiting):
    response = register(client, "gw-new", "otp-12345678")
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "device_gw-new"
    awaiting.refresh_from_db()
    assert awaiting.token_hash == hash_token(body["password"])
    assert awaiting.registered_at is not None
    assert body["password"] not in awaiting.token_hash


def test_the_one_time_password_works_only_once(client, awaiting):
    assert register(client, "gw-new", "otp-12345678").status_code == 200
    awaiting.refresh_from_db()
    token_hash = awaiting.token_hash
    second = register(client, "gw-new", "otp-12345678")
    assert second.status_code == 401
    assert "wrong, used or expired" in second.json()["error"]
    awaiting.refresh_from_db()
    assert awaiting.token_hash == token_hash


def test_a_wrong_one_time_password_changes_nothing(client, awaiting):
    response = register(client, "gw-new", "otp-wrong-000")
    assert response.status_code == 401
    awaiting.refresh_from_db()
    assert awaiting.token_hash == ""
    assert register(client, "gw-new", "otp-12345678").status_code == 200


def test_an_expired_one_time_password_is_refused(client, awaiting):
    awaiting.otp_expires_at = timezone.now() - timedelta(seconds=1)
    awaiting.save()
    assert register(client, "gw-new", "otp-12345678").status_code == 401


def test_an_unknown_device_is_refused_like_a_wrong_password(client, awaiting):
    response = register(client, "gw-nope", "otp-12345678")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "the body must be JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'{"deviceId": "gw-new"}', "deviceId and oneTimePassword are required strings"),
        (b'{"deviceId": 5, "oneTimePassword": "x"}', "deviceId and oneTimePassword are required strings"),
    ],
)
def test_a_malformed_request_gets_400_with_a_reason(client, awaiting, body, message):
    response = client.post(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_registration_only_takes_post(client, awaiting):
    assert client.get(URL).status_code == 405


def test_the_register_page_shows_the_one_time_password_and_agent_command(client, db):
    user = User.objects.create_user("registrar", password="x-pass-1234")
    user.user_permissions.add(Permission.objects.get(codename="add_device"))
    client.force_login(user)
    response = client.post(reverse("device-register"), {"serial": "gw-77", "name": "Boiler", "one_time_password": ""})
    page = response.content.decode()
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    device = Device.objects.get(serial="gw-77")
    otp = page.split('<code id="otp" class="secret">')[1].split("</code>")[0]
    assert len(otp) >= 16
    assert f"--device-id gw-77 --one-time-password {otp}" in page
    assert register(client, "gw-77", otp).status_code == 200
    device.refresh_from_db()
    assert device.name == "Boiler" and not device.awaiting_agent


def test_the_register_page_needs_the_add_device_permission(client, operator):
    client.force_login(operator)
    assert client.get(reverse("device-register")).status_code == 403
    assert client.post(reverse("device-register"), {"serial": "gw-99"}).status_code == 403
    assert not Device.objects.filter(serial="gw-99").exists()


def test_the_register_page_refuses_bad_input_with_messages(client, superuser, device):
    client.force_login(superuser)
    device.issue_token()
    device.save()
    page = client.post(reverse("device-register"), {"serial": "gw-0001"}).content.decode()
    assert "A device with this serial is already registered." in page
    page = client.post(reverse("device-register"), {"serial": "bad serial!"}).content.decode()
    assert "A serial starts with a letter or digit" in page
    page = client.post(reverse("device-register"), {"serial": "gw-5", "one_time_password": "short"}).content.decode()
    assert "Ensure this value has at least 8 characters" in page
    page = client.post(reverse("device-register"), {"serial": "gw-5", "one_time_password": "x" * 33}).content.decode()
    assert "Ensure this value has at most 32 characters" in page


def test_the_command_registers_a_device_with_a_given_password(client, db, capsys):
    call_command("register_device", "gw-cli", "--name", "CLI box", "--one-time-password", "given-otp-1")
    out = capsys.readouterr().out
    assert "One-time password: given-otp-1" in out
    assert register(client, "gw-cli", "given-otp-1").json()["username"] == "device_gw-cli"


def test_the_command_generates_a_password_when_none_is_given(client, db, capsys):
    call_command("register_device", "gw-gen")
    otp = capsys.readouterr().out.split("One-time password: ")[1].split()[0]
    assert register(client, "gw-gen", otp).status_code == 200


def test_guessing_one_time_passwords_locks_the_device_id_even_for_the_right_one(client, awaiting):
    for _ in range(throttle.REGISTRATION.max_failures):
        assert register(client, "gw-new", "otp-guess-000").status_code == 401
    locked = register(client, "gw-new", "otp-12345678")
    assert locked.status_code == 429
    assert locked.json()["error"] == "too many wrong one-time passwords for this device: try again in 5 minutes"
    awaiting.refresh_from_db()
    assert awaiting.registered_at is None
