"""Connect records an operation in the audit trail and opens the session's
page with a single-use launch token."""

from urllib.parse import parse_qs, urlsplit

from django.urls import reverse

from endpoints.models import hash_token
from sessions.models import Operation, Status


def connect(client, device, endpoint, **extra):
    return client.post(reverse("endpoint-connect", args=[device.pk, endpoint.pk]), **extra)


def test_connect_opens_the_session_page_with_a_launch_token(client, operator, device, ssh_endpoint):
    client.force_login(operator)
    response = connect(client, device, ssh_endpoint, REMOTE_ADDR="127.0.0.9")
    operation = Operation.objects.get()
    url = urlsplit(response.url)
    assert url.path == reverse("session", args=[operation.pk])
    launch = parse_qs(url.query)["launch"][0]
    assert len(launch) >= 32 and operation.launch_token_hash == hash_token(launch)
    assert operation.status == Status.PENDING
    assert (operation.username, operation.endpoint_name, operation.protocol) == ("operator", "PLC shell", "SSH")
    assert (operation.hostname, operation.port, operation.client_address) == ("10.0.0.5", 22, "127.0.0.9")


def test_the_session_page_shows_the_endpoint_and_device(client, operator, device, ssh_endpoint):
    client.force_login(operator)
    response = connect(client, device, ssh_endpoint)
    page = client.get(response.url).content.decode()
    assert "<title>PLC shell on Line 1 gateway · Remote access gateway</title>" in page
    assert "connecting to device…" in page
    assert "js/terminal.js" in page and "vendor/xterm/css/xterm.css" in page
    assert "s3cret-ssh-password" not in page


def test_the_session_page_is_only_for_its_own_user(client, operator, owner, device, ssh_endpoint):
    client.force_login(operator)
    response = connect(client, device, ssh_endpoint)
    client.force_login(owner)
    assert client.get(response.url).status_code == 404


def test_the_connect_button_opens_terminals_in_a_new_tab(client, operator, device, ssh_endpoint, vnc_endpoint):
    client.force_login(operator)
    page = client.get(reverse("remote-access", args=[device.pk])).content.decode()
    ssh_form = page.split(reverse("endpoint-connect", args=[device.pk, ssh_endpoint.pk]))[1].split(">")[0]
    assert 'target="_blank"' in ssh_form


def test_an_unopened_session_page_fails_its_operation_after_a_while(client, operator, device, ssh_endpoint):
    client.force_login(operator)
    connect(client, device, ssh_endpoint)
    Operation.objects.update(launch_expires_at="2000-01-01T00:00:00Z")
    page = client.get(reverse("control", args=[device.pk])).content.decode()
    operation = Operation.objects.get()
    assert operation.status == Status.FAILED
    assert "the session page was not opened in time" in page


def test_connect_needs_read_and_post(client, outsider, operator, device, ssh_endpoint):
    url = reverse("endpoint-connect", args=[device.pk, ssh_endpoint.pk])
    client.force_login(outsider)
    assert client.post(url).status_code == 404
    client.force_login(operator)
    assert client.get(url).status_code == 405
    # Only the refusal's audit record (tests/asgi/test_audit.py).
    assert list(Operation.objects.values_list("username", "failure_reason")) == [
        ("outsider", "refused: no access to the device")]


def test_the_audit_record_outlives_its_endpoint(client, owner, device, ssh_endpoint):
    client.force_login(owner)
    connect(client, device, ssh_endpoint)
    client.post(reverse("endpoint-remove", args=[device.pk, ssh_endpoint.pk]))
    operation = Operation.objects.get()
    assert operation.endpoint is None and operation.endpoint_name == "PLC shell"
    assert "PLC shell" in client.get(reverse("control", args=[device.pk])).content.decode()


def test_the_control_tab_lists_operations_newest_first(client, operator, device, ssh_endpoint, vnc_endpoint):
    client.force_login(operator)
    connect(client, device, ssh_endpoint)
    connect(client, device, vnc_endpoint)
    rows = client.get(reverse("control", args=[device.pk])).content.decode().split("<tbody>")[1]
    assert rows.index("HMI screen") < rows.index("PLC shell")


def test_a_vnc_endpoint_opens_the_novnc_page(client, operator, device, vnc_endpoint):
    client.force_login(operator)
    response = connect(client, device, vnc_endpoint)
    page = client.get(response.url).content.decode()
    assert "js/vnc.js" in page and "Ctrl+Alt+Del" in page and "Clipboard" in page
    assert "vnc-pass" not in page


def test_a_passthrough_endpoint_has_no_browser_session(client, operator, device):
    from endpoints.models import Endpoint

    proxy = Endpoint.objects.create(device=device, name="Proxy", protocol="PASSTHROUGH", hostname="h", port=22)
    client.force_login(operator)
    tab = client.get(reverse("remote-access", args=[device.pk])).content.decode()
    assert f"remote-access-client server {device.pk} --config {proxy.pk}" in tab
    response = connect(client, device, proxy, follow=True)
    assert "“Proxy” is a passthrough endpoint: connect to it with a local proxy." in response.content.decode()
    assert list(Operation.objects.values_list("status", "failure_reason")) == [
        ("FAILED", "refused: a passthrough endpoint takes a local proxy")]
