"""Bad input, generated: every answer is a clear error, never a server error,
and nothing is changed by input that is refused. Each run is bounded."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from endpoints.models import Device, Endpoint
from portal.models import ApiToken
from sessions import operations
from sessions.models import Operation

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FIELDS = ["name", "hostname", "port", "protocol", "credentialsType", "username", "password", "privateKey",
          "publicKey", "hostKey", "junk"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=600)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner_headers(owner) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(owner, 'fuzz')[1]}"}


@BOUNDED
@given(body=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)) | json_values)
def test_the_configurations_api_answers_any_json_with_201_or_a_clear_400(client, owner_headers, device, body):
    before = Endpoint.objects.count()
    response = client.post(f"/service/remoteaccess/devices/{device.pk}/configurations", json.dumps(body),
                           content_type="application/json", **owner_headers)
    assert response.status_code in (201, 400), response.content
    if response.status_code == 400:
        assert response.json()["error"]
        assert Endpoint.objects.count() == before
    else:
        Endpoint.objects.filter(pk=int(response.json()["id"])).delete()


@BOUNDED
@given(hostname=texts, port=texts, name=texts, username=texts, private_key=texts, host_key=texts)
def test_the_endpoint_form_answers_any_text_with_a_page(client, owner, device, hostname, port, name, username,
                                                        private_key, host_key):
    client.force_login(owner)
    before = Endpoint.objects.count()
    response = client.post(f"/devices/{device.pk}/remote-access/add/ssh/", {
        "name": name, "hostname": hostname, "port": port, "credentials_type": "KEY_PAIR", "username": username,
        "private_key": private_key, "host_key": host_key,
    })
    assert response.status_code in (200, 302)
    if response.status_code == 200:
        assert Endpoint.objects.count() == before
        assert 'class="error"' in response.content.decode()
    else:
        Endpoint.objects.filter(device=device).delete()


@BOUNDED
@given(line=texts | st.lists(st.sampled_from(["501", "502", "503", "504", "505", "506", "530", "ERR",
                                               "c8y_RemoteAccessConnect", '"', ",", "1", "99999999999999999999",
                                               "\n", "\r"]), max_size=8).map("".join))
def test_a_control_channel_line_is_applied_or_refused_with_a_reason(device, ssh_endpoint, operator, line):
    Device.objects.filter(pk=device.pk).update(is_online=True, control_channel="fuzz")
    if not Operation.objects.exists():
        operations.create(ssh_endpoint, operator, None, "client")
    before = list(Operation.objects.values_list("pk", "status", "failure_reason"))
    report = operations.apply_report(device, line)
    if report.error:
        assert list(Operation.objects.values_list("pk", "status", "failure_reason")) == before
    else:
        assert line.split(",")[0].strip() in {"501", "502", "503", "504", "505", "506"}


@BOUNDED
@given(body=json_values | st.binary(max_size=200).map(lambda b: b.decode("latin1")))
def test_registration_answers_any_body_with_a_clear_400_or_401(client, db, body):
    payload = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/service/remoteaccess/registration", payload, content_type="application/json")
    assert response.status_code in (400, 401)
    assert response.json()["error"]
    assert not Device.objects.exclude(token_hash="").exists()
