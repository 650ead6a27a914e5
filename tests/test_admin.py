from django.urls import reverse
from guardian.shortcuts import get_perms

from sessions.models import Operation


def test_the_admin_lists_devices_groups_endpoints_and_operations(client, superuser, device, device_group, ssh_endpoint):
    client.force_login(superuser)
    for name in ["endpoints_device", "endpoints_devicegroup", "endpoints_endpoint", "remote_sessions_operation"]:
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
    page = client.get(reverse("admin:endpoints_device_change", args=[device.pk])).content.decode()
    assert "gw-0001" in page and "PLC shell" in page
    assert "s3cret-ssh-password" not in page
    page = client.get(reverse("admin:endpoints_endpoint_change", args=[ssh_endpoint.pk])).content.decode()
    assert "s3cret-ssh-password" not in page and 'name="password"' not in page


def test_object_permissions_are_granted_through_the_admin(client, superuser, outsider, device):
    client.force_login(superuser)
    url = reverse("admin:endpoints_device_permissions_manage_user", args=[device.pk, outsider.pk])
    response = client.post(url, {"permissions": ["remote_access_read"]})
    assert response.status_code == 302
    assert get_perms(outsider, device) == ["remote_access_read"]


def test_operations_cannot_be_changed_or_deleted_in_the_admin(client, superuser, device, ssh_endpoint):
    operation = Operation.for_endpoint(ssh_endpoint, superuser, "127.0.0.1")
    operation.save()
    client.force_login(superuser)
    client.post(reverse("admin:remote_sessions_operation_delete", args=[operation.pk]), {"post": "yes"})
    client.post(reverse("admin:remote_sessions_operation_change", args=[operation.pk]), {"status": "SUCCESSFUL"})
    operation.refresh_from_db()
    assert operation.status == "PENDING"
    page = client.get(reverse("admin:remote_sessions_operation_changelist")).content.decode()
    assert "PLC shell" in page


def test_an_administrator_revokes_a_devices_credentials(client, superuser, device):
    token = device.issue_token()
    device.save()
    client.force_login(superuser)
    response = client.post(reverse("admin:endpoints_device_changelist"),
                           {"action": "revoke_credentials", "_selected_action": [device.pk]}, follow=True)
    assert "Revoked the credentials of 1 device(s)." in response.content.decode()
    device.refresh_from_db()
    assert not device.token_matches(token) and device.awaiting_agent
