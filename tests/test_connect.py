"""Connect records an operation in the audit trail; with no agent online the
operation fails at once with a reason the user sees."""

from django.urls import reverse

from sessions.models import Operation, Status


def test_connect_to_an_offline_device_fails_with_a_recorded_reason(client, operator, device, ssh_endpoint):
    client.force_login(operator)
    response = client.post(
        reverse("endpoint-connect", args=[device.pk, ssh_endpoint.pk]), follow=True, REMOTE_ADDR="127.0.0.9"
    )
    page = response.content.decode()
    assert "Cannot connect to “PLC shell”: device is offline." in page
    operation = Operation.objects.get()
    assert operation.status == Status.FAILED
    assert operation.failure_reason == "device is offline"
    assert operation.ended is not None
    assert (operation.username, operation.endpoint_name, operation.protocol) == ("operator", "PLC shell", "SSH")
    assert (operation.hostname, operation.port, operation.client_address) == ("10.0.0.5", 22, "127.0.0.9")
    assert "device is offline" in client.get(reverse("control", args=[device.pk])).content.decode()


def test_connect_needs_read_and_post(client, outsider, operator, device, ssh_endpoint):
    url = reverse("endpoint-connect", args=[device.pk, ssh_endpoint.pk])
    client.force_login(outsider)
    assert client.post(url).status_code == 404
    client.force_login(operator)
    assert client.get(url).status_code == 405
    assert not Operation.objects.exists()


def test_the_audit_record_outlives_its_endpoint(client, owner, device, ssh_endpoint):
    client.force_login(owner)
    client.post(reverse("endpoint-connect", args=[device.pk, ssh_endpoint.pk]))
    client.post(reverse("endpoint-remove", args=[device.pk, ssh_endpoint.pk]))
    operation = Operation.objects.get()
    assert operation.endpoint is None and operation.endpoint_name == "PLC shell"
    assert "PLC shell" in client.get(reverse("control", args=[device.pk])).content.decode()


def test_the_control_tab_lists_operations_newest_first(client, operator, device, ssh_endpoint, vnc_endpoint):
    client.force_login(operator)
    client.post(reverse("endpoint-connect", args=[device.pk, ssh_endpoint.pk]))
    client.post(reverse("endpoint-connect", args=[device.pk, vnc_endpoint.pk]))
    rows = client.get(reverse("control", args=[device.pk])).content.decode().split("<tbody>")[1]
    assert rows.index("HMI screen") < rows.index("PLC shell")
