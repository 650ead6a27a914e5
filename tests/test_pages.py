"""The pages render for each role, with the security headers, and every
state-changing form needs its CSRF token."""

import pytest
from django.test import Client
from django.urls import reverse


def test_the_login_page_logs_a_user_in_and_out(client, operator, device):
    response = client.post(reverse("login"), {"username": "operator", "password": "operator-pass-1"}, follow=True)
    page = response.content.decode()
    assert "Line 1 gateway" in page and "operator" in page
    response = client.post(reverse("logout"), follow=True)
    assert "Log in" in response.content.decode()
    assert client.get(reverse("device-list")).status_code == 302


def test_a_wrong_password_shows_a_message(client, operator):
    page = client.post(reverse("login"), {"username": "operator", "password": "nope"}).content.decode()
    assert "Please enter a correct username and password" in page


def test_the_root_goes_to_the_device_list(client, operator):
    client.force_login(operator)
    assert client.get("/", follow=True).redirect_chain[-1][0] == reverse("device-list")


@pytest.mark.parametrize("persona", ["owner", "operator", "superuser"])
def test_the_device_pages_render_for_each_role(client, request, persona, device, ssh_endpoint, vnc_endpoint):
    client.force_login(request.getfixturevalue(persona))
    listing = client.get(reverse("device-list")).content.decode()
    assert "Line 1 gateway" in listing and "gw-0001" in listing and "awaiting agent" in listing
    tab = client.get(reverse("remote-access", args=[device.pk])).content.decode()
    assert "PLC shell" in tab and "10.0.0.5:22" in tab and "HMI screen" in tab and "10.0.0.67:5900" in tab
    control = client.get(reverse("control", args=[device.pk])).content.decode()
    assert "No operations yet" in control


def test_pages_never_show_stored_secrets(client, owner, device, ssh_endpoint, vnc_endpoint):
    client.force_login(owner)
    urls = [
        reverse("device-list"),
        reverse("remote-access", args=[device.pk]),
        reverse("endpoint-edit", args=[device.pk, ssh_endpoint.pk]),
        reverse("endpoint-edit", args=[device.pk, vnc_endpoint.pk]),
        reverse("endpoint-remove", args=[device.pk, ssh_endpoint.pk]),
    ]
    for url in urls:
        page = client.get(url).content.decode()
        assert "s3cret-ssh-password" not in page and "vnc-pass" not in page


def test_responses_carry_the_security_headers(client, operator):
    client.force_login(operator)
    response = client.get(reverse("device-list"))
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_hold_no_inline_script(client, owner, device, ssh_endpoint):
    client.force_login(owner)
    for url in [reverse("device-list"), reverse("remote-access", args=[device.pk]),
                reverse("endpoint-edit", args=[device.pk, ssh_endpoint.pk]), reverse("login")]:
        page = client.get(url).content.decode()
        assert "<script>" not in page and "onclick=" not in page


@pytest.mark.parametrize(
    "name, args, data",
    [
        ("endpoint-add", ["vnc"], {"name": "x", "hostname": "h", "port": "5900"}),
        ("endpoint-remove", ["ENDPOINT"], {}),
        ("endpoint-connect", ["ENDPOINT"], {}),
        ("device-register", None, {"serial": "gw-csrf"}),
        ("remote-access-settings", None, {"auto_save_host_key": "on"}),
        ("logout", None, {}),
        ("profile", None, {"name": "laptop"}),
    ],
)
def test_state_changing_forms_refuse_a_missing_csrf_token(superuser, device, ssh_endpoint, name, args, data):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    if args is None:
        url = reverse(name)
    else:
        url = reverse(name, args=[device.pk] + [ssh_endpoint.pk if a == "ENDPOINT" else a for a in args])
    response = client.post(url, data)
    assert response.status_code == 403
    assert b"CSRF" in response.content


def test_the_settings_page_is_for_staff_only(client, operator, staff):
    client.force_login(operator)
    assert client.get(reverse("remote-access-settings")).status_code == 403
    client.force_login(staff)
    page = client.get(reverse("remote-access-settings")).content.decode()
    assert "auto-save host key" in page.lower()


def test_staff_switch_auto_save_host_key_on(client, staff):
    from endpoints.models import RemoteAccessSettings

    assert RemoteAccessSettings.load().auto_save_host_key is False
    client.force_login(staff)
    response = client.post(reverse("remote-access-settings"), {"auto_save_host_key": "on"}, follow=True)
    assert "Remote access settings saved." in response.content.decode()
    assert RemoteAccessSettings.load().auto_save_host_key is True


def test_unknown_pages_get_a_friendly_404(client, operator):
    client.force_login(operator)
    response = client.get("/devices/999999/remote-access/")
    assert response.status_code == 404
    assert "There is nothing here, or you have no access to it." in response.content.decode()


def test_a_protocol_that_does_not_exist_is_not_found(client, owner, device):
    client.force_login(owner)
    assert client.get(reverse("endpoint-add", args=[device.pk, "rdp"])).status_code == 404
