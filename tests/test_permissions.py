"""Who sees, adds, edits and removes what: owner (ADMIN), operator (READ),
outsider (none), and grants through device groups and user groups."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from guardian.shortcuts import assign_perm

from endpoints.access import Level, devices_for, has_access
from endpoints.models import Endpoint

ADD_VNC = {"name": "New screen", "hostname": "10.0.0.9", "port": "5900", "password": ""}


def pages(device, endpoint):
    return {
        "detail": reverse("device-detail", args=[device.pk]),
        "remote-access": reverse("remote-access", args=[device.pk]),
        "control": reverse("control", args=[device.pk]),
        "add": reverse("endpoint-add", args=[device.pk, "vnc"]),
        "edit": reverse("endpoint-edit", args=[device.pk, endpoint.pk]),
        "remove": reverse("endpoint-remove", args=[device.pk, endpoint.pk]),
    }


@pytest.mark.parametrize(
    "persona, expected",
    [
        ("owner", {"detail": 302, "remote-access": 200, "control": 200, "add": 200, "edit": 200, "remove": 200}),
        ("operator", {"detail": 302, "remote-access": 200, "control": 200, "add": 403, "edit": 403, "remove": 403}),
        ("outsider", {"detail": 404, "remote-access": 404, "control": 404, "add": 404, "edit": 404, "remove": 404}),
        ("superuser", {"detail": 302, "remote-access": 200, "control": 200, "add": 200, "edit": 200, "remove": 200}),
    ],
)
def test_each_role_gets_what_it_may(client, request, device, ssh_endpoint, persona, expected):
    client.force_login(request.getfixturevalue(persona))
    got = {name: client.get(url).status_code for name, url in pages(device, ssh_endpoint).items()}
    assert got == expected


def test_anonymous_visitors_are_sent_to_the_login_page(client, device, ssh_endpoint):
    for url in pages(device, ssh_endpoint).values():
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_the_device_list_shows_only_devices_the_user_may_read(client, operator, device, other_device):
    client.force_login(operator)
    page = client.get(reverse("device-list")).content.decode()
    assert device.serial in page
    assert other_device.serial not in page


def test_an_outsider_sees_an_empty_device_list(client, outsider, device):
    client.force_login(outsider)
    page = client.get(reverse("device-list")).content.decode()
    assert device.serial not in page
    assert "No devices to show" in page


def test_an_endpoint_of_another_device_is_not_found_through_this_device(client, owner, device, other_device):
    foreign = Endpoint.objects.create(device=other_device, name="x", protocol="TELNET", hostname="h", port=23)
    client.force_login(owner)
    assert client.get(reverse("endpoint-edit", args=[device.pk, foreign.pk])).status_code == 404
    assert client.get(reverse("endpoint-edit", args=[other_device.pk, foreign.pk])).status_code == 404


def test_an_operator_cannot_add_edit_or_remove_endpoints(client, operator, device, ssh_endpoint):
    client.force_login(operator)
    assert client.post(reverse("endpoint-add", args=[device.pk, "vnc"]), ADD_VNC).status_code == 403
    edit = client.post(reverse("endpoint-edit", args=[device.pk, ssh_endpoint.pk]), {"name": "renamed"})
    assert edit.status_code == 403
    assert client.post(reverse("endpoint-remove", args=[device.pk, ssh_endpoint.pk])).status_code == 403
    ssh_endpoint.refresh_from_db()
    assert ssh_endpoint.name == "PLC shell"
    assert device.endpoints.count() == 1


def test_an_owner_adds_and_removes_an_endpoint(client, owner, device, ssh_endpoint):
    client.force_login(owner)
    response = client.post(reverse("endpoint-add", args=[device.pk, "vnc"]), ADD_VNC, follow=True)
    assert "Endpoint “New screen” added." in response.content.decode()
    assert device.endpoints.filter(name="New screen", protocol="VNC", port=5900).exists()
    response = client.post(reverse("endpoint-remove", args=[device.pk, ssh_endpoint.pk]), follow=True)
    assert "Endpoint “PLC shell” removed." in response.content.decode()
    assert not device.endpoints.filter(pk=ssh_endpoint.pk).exists()


def test_the_remote_access_tab_shows_controls_by_level(client, owner, operator, device, ssh_endpoint):
    client.force_login(operator)
    page = client.get(reverse("remote-access", args=[device.pk])).content.decode()
    assert "Connect" in page and "PLC shell" in page
    assert "Edit" not in page and "Add endpoint" not in page
    client.force_login(owner)
    page = client.get(reverse("remote-access", args=[device.pk])).content.decode()
    assert "Edit" in page and "Remove" in page and "Add endpoint" in page


def test_the_remote_access_tab_is_hidden_without_the_connect_operation(client, operator, device):
    device.supported_operations = []
    device.save()
    client.force_login(operator)
    assert client.get(reverse("device-detail", args=[device.pk])).url == reverse("control", args=[device.pk])
    assert client.get(reverse("remote-access", args=[device.pk])).status_code == 404
    assert "Remote access</a>" not in client.get(reverse("control", args=[device.pk])).content.decode()


def test_a_grant_on_a_device_group_covers_its_devices(outsider, device, other_device, device_group):
    assign_perm("remote_access_read", outsider, device_group)
    assert has_access(outsider, device, Level.READ)
    assert not has_access(outsider, device, Level.ADMIN)
    assert not has_access(outsider, other_device, Level.READ)
    assert list(devices_for(outsider)) == [device]


def test_a_grant_to_a_user_group_covers_its_members(outsider, device, user_group):
    outsider.groups.add(user_group)
    assign_perm("remote_access_admin", user_group, device)
    assert has_access(outsider, device, Level.ADMIN)
    assert list(devices_for(outsider, Level.ADMIN)) == [device]


def test_admin_implies_read(owner, device):
    assert has_access(owner, device, Level.READ)
    assert list(devices_for(owner, Level.READ)) == [device]


def test_a_model_wide_grant_covers_every_device(outsider, device, other_device):
    outsider.user_permissions.add(
        Permission.objects.get(codename="remote_access_read", content_type__model="device")
    )
    outsider = type(outsider).objects.get(pk=outsider.pk)
    assert set(devices_for(outsider)) == {device, other_device}


def test_an_inactive_user_has_no_access(operator, device):
    operator.is_active = False
    operator.save()
    assert not has_access(operator, device)
    assert not devices_for(operator).exists()


def test_staff_alone_gives_no_device_access(client, staff, device):
    client.force_login(staff)
    assert client.get(reverse("remote-access", args=[device.pk])).status_code == 404
