"""The configurations API: the JSON shapes, the same validation as the pages,
secrets never in a response, and who may do what."""

import base64
import json

import pytest
from django.test import Client

from endpoints import keys
from endpoints.models import Endpoint
from portal.models import ApiToken


def url(device, endpoint=None) -> str:
    base = f"/service/remoteaccess/devices/{device.pk}/configurations"
    return base if endpoint is None else f"{base}/{endpoint.pk}"


def bearer(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user, 'cli')[1]}"}


def call(client, method, path, body=None, **headers):
    data = json.dumps(body) if body is not None else ""
    return getattr(client, method)(path, data, content_type="application/json", **headers)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_the_list_is_a_bare_array_with_string_ids_and_nested_credentials(client, operator, device, ssh_endpoint):
    response = client.get(url(device), **bearer(operator))
    assert response.status_code == 200
    assert response.json() == [{
        "id": str(ssh_endpoint.pk), "name": "PLC shell", "hostname": "10.0.0.5", "port": 22, "protocol": "SSH",
        "credentialsType": "USER_PASS",
        "credentials": {"type": "USER_PASS", "username": "pi", "publicKey": "", "hostKey": ""},
    }]


def test_no_response_ever_holds_a_secret(client, owner, device, ssh_endpoint, vnc_endpoint):
    pair = keys.generate_key_pair()
    headers = bearer(owner)
    created = call(client, "post", url(device), {
        "name": "Keyed", "hostname": "10.0.0.9", "port": 22, "protocol": "SSH", "credentialsType": "KEY_PAIR",
        "username": "root", "privateKey": pair.openssh,
    }, **headers)
    assert created.status_code == 201
    texts = [created.content.decode(), client.get(url(device), **headers).content.decode()]
    for endpoint in Endpoint.objects.all():
        texts.append(client.get(url(device, endpoint), **headers).content.decode())
    for text in texts:
        for secret in ("s3cret-ssh-password", "vnc-pass", "PRIVATE KEY", pair.openssh.splitlines()[1]):
            assert secret not in text
    assert json.loads(created.content)["credentials"]["publicKey"] == pair.public_openssh


def test_an_admin_adds_changes_and_removes_a_configuration(client, owner, device):
    headers = bearer(owner)
    created = call(client, "post", url(device), {
        "name": "Router", "hostname": "192.168.1.1", "port": 2222, "protocol": "SSH",
        "credentialsType": "USER_PASS", "username": "admin", "password": "pw-1",
    }, **headers)
    assert created.status_code == 201
    endpoint = Endpoint.objects.get(pk=int(created.json()["id"]))
    assert endpoint.password == "pw-1"
    changed = call(client, "put", url(device, endpoint), {"port": 22, "name": "Router 2"}, **headers)
    assert changed.status_code == 200 and changed.json()["port"] == 22
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.password) == ("Router 2", "pw-1"), "an omitted password is kept"
    assert call(client, "delete", url(device, endpoint), **headers).status_code == 204
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists()


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"hostname": "bad host"}, "hostname", "bad host is not a valid host name or IP address"),
        ({"port": 0}, "port", "Enter a port from 1 to 65535."),
        ({"port": "abc"}, "port", "Enter a port from 1 to 65535."),
        ({"name": ""}, "name", "This field is required."),
        ({"username": ""}, "username", "Enter the user name to log in as."),
        ({"credentialsType": "KEY_PAIR"}, "privateKey", "Paste or upload a private key, or generate a key pair."),
        ({"credentialsType": "KEY_PAIR", "privateKey": "nonsense"}, "privateKey", "The private key is not usable"),
        ({"hostKey": "ssh-ed25519 nonsense"}, "hostKey", "The host key is not usable"),
        ({"credentialsType": "TOKEN"}, "credentialsType", "Select a valid choice."),
    ],
)
def test_bad_input_gets_the_forms_messages(client, owner, device, body, field, message):
    full = {"name": "Shell", "hostname": "10.0.0.1", "port": 22, "protocol": "SSH",
            "credentialsType": "USER_PASS", "username": "pi", "password": "pw", **body}
    response = call(client, "post", url(device), full, **bearer(owner))
    assert response.status_code == 400
    assert any(message in text for text in response.json()["fields"][field])
    assert message in response.json()["error"] or field in response.json()["error"]
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(
    "body, message",
    [
        ("not json", "the body must be a JSON object"),
        ([1, 2], "the body must be a JSON object"),
        ({"protocol": "RDP"}, "protocol must be one of SSH, TELNET, VNC, PASSTHROUGH"),
        ({"protocol": "SSH", "name": 5}, "name must be a string"),
        ({"protocol": "SSH", "port": [22]}, "port must be a number from 1 to 65535"),
        ({"protocol": "SSH", "port": True}, "port must be a number from 1 to 65535"),
    ],
)
def test_a_body_of_the_wrong_shape_gets_400_with_a_reason(client, owner, device, body, message):
    data = body if isinstance(body, str) else json.dumps(body)
    response = client.post(url(device), data, content_type="application/json", **bearer(owner))
    assert response.status_code == 400
    assert response.json()["error"] == message


def test_read_may_list_and_get_but_not_write(client, operator, device, ssh_endpoint):
    headers = bearer(operator)
    assert client.get(url(device, ssh_endpoint), **headers).status_code == 200
    body = {"name": "x", "hostname": "h", "port": 23, "protocol": "TELNET"}
    assert call(client, "post", url(device), body, **headers).status_code == 403
    assert call(client, "put", url(device, ssh_endpoint), {"port": 2}, **headers).status_code == 403
    assert call(client, "delete", url(device, ssh_endpoint), **headers).status_code == 403
    ssh_endpoint.refresh_from_db()
    assert ssh_endpoint.port == 22


def test_without_read_the_device_is_not_found(client, outsider, device, ssh_endpoint):
    headers = bearer(outsider)
    assert client.get(url(device), **headers).status_code == 404
    assert client.get(url(device, ssh_endpoint), **headers).status_code == 404
    assert call(client, "delete", url(device, ssh_endpoint), **headers).status_code == 404
    assert client.get("/service/remoteaccess/devices/abc/configurations", **headers).status_code == 404


def test_callers_authenticate_with_basic_bearer_or_the_session_cookie(client, operator, device, ssh_endpoint):
    for name in ("operator", "t1234/operator"):
        basic = base64.b64encode(f"{name}:operator-pass-1".encode()).decode()
        assert client.get(url(device), HTTP_AUTHORIZATION=f"Basic {basic}").status_code == 200
    wrong = base64.b64encode(b"operator:nope").decode()
    refused = client.get(url(device), HTTP_AUTHORIZATION=f"Basic {wrong}")
    assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
    assert client.get(url(device)).status_code == 401
    client.force_login(operator)
    assert client.get(url(device)).status_code == 200


def test_a_write_with_the_session_cookie_needs_the_csrf_token(owner, device):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    body = {"name": "t", "hostname": "h", "port": 23, "protocol": "TELNET"}
    refused = call(client, "post", url(device), body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    client.get("/devices/")
    token = client.cookies["csrftoken"].value
    assert call(client, "post", url(device), body, HTTP_X_CSRFTOKEN=token).status_code == 201


def test_a_new_key_pair_is_generated(client, operator):
    response = client.post("/service/remoteaccess/keypair/generate", **bearer(operator))
    pair = response.json()
    assert response.status_code == 200
    assert keys.read_private_key(pair["privateKey"]).public_openssh == pair["publicKey"]
    assert pair["publicKey"].startswith("ssh-ed25519 ")
    assert client.post("/service/remoteaccess/keypair/generate").status_code == 401


def test_the_health_check_answers_head(client, db):
    assert client.head("/service/remoteaccess/health").status_code == 200
