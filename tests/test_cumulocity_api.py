"""The part of Cumulocity's core API that c8ylp uses, and the lock-out after
repeated failed logins."""

import base64
import json

import pytest
from django.urls import reverse
from guardian.shortcuts import assign_perm

from portal import login_tokens
from portal.throttle import LOGIN


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def oauth(client, username, password):
    return client.post("/tenant/oauth?tenant_id=t1", {"grant_type": "PASSWORD", "username": username,
                                                        "password": password, "tfa_code": ""})


def test_login_options_offer_the_form_login_with_the_tenant(client, db):
    options = client.get("/tenant/loginOptions").json()["loginOptions"]
    oauth_option = next(o for o in options if o["type"] == "OAUTH2_INTERNAL")
    assert oauth_option["initRequest"].endswith("/tenant/oauth?tenant_id=t1")


def test_the_form_login_sets_a_token_that_works_as_bearer_and_as_cookie(client, operator, device):
    response = oauth(client, "t1/operator", "operator-pass-1")
    assert response.status_code == 200
    token, xsrf = response.cookies["authorization"].value, response.cookies["XSRF-TOKEN"].value
    assert response.cookies["authorization"]["httponly"]
    assert login_tokens.claims_of(token)["sub"] == "operator"
    fresh = type(client)()
    assert fresh.get("/user/currentUser", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    fresh.cookies["authorization"] = token
    assert fresh.get("/user/currentUser", HTTP_X_XSRF_TOKEN=xsrf).status_code == 200
    assert fresh.get("/user/currentUser", HTTP_X_XSRF_TOKEN="forged").status_code == 401
    assert fresh.get("/user/currentUser").status_code == 401


def test_a_tampered_or_foreign_token_is_refused(client, operator):
    token, _ = login_tokens.issue(operator)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "root"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for bad in (f"{header}.{forged}.{signature}", "a.b.c", "nonsense"):
        assert client.get("/user/currentUser", HTTP_AUTHORIZATION=f"Bearer {bad}").status_code == 401


def test_a_wrong_password_gets_cumulocitys_message(client, operator):
    response = oauth(client, "operator", "nope")
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid credentials!"


def test_the_current_user_has_roles_from_device_permissions(client, operator, owner, outsider, device):
    def roles(user):
        token, _ = login_tokens.issue(user)
        body = client.get("/user/currentUser", HTTP_AUTHORIZATION=f"Bearer {token}").json()
        return sorted(role["id"] for role in body["effectiveRoles"])

    assert roles(operator) == ["ROLE_REMOTE_ACCESS_READ"]
    assert roles(owner) == ["ROLE_REMOTE_ACCESS_ADMIN", "ROLE_REMOTE_ACCESS_READ"]
    assert roles(outsider) == []


def test_a_device_is_found_by_serial_with_its_configurations(client, operator, device, ssh_endpoint):
    token, _ = login_tokens.issue(operator)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    identity = client.get("/identity/externalIds/c8y_Serial/gw-0001", **headers).json()
    assert identity["managedObject"]["id"] == str(device.pk)
    managed = client.get(f"/inventory/managedObjects/{device.pk}", **headers).json()
    assert managed["c8y_SupportedOperations"] == ["c8y_RemoteAccessConnect"]
    assert [config["name"] for config in managed["c8y_RemoteAccessList"]] == ["PLC shell"]
    assert "s3cret-ssh-password" not in json.dumps(managed)
    assert client.get("/tenant/currentTenant", **headers).json()["name"] == "t1"


def test_without_read_the_device_is_not_found(client, outsider, device):
    token, _ = login_tokens.issue(outsider)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert client.get("/identity/externalIds/c8y_Serial/gw-0001", **headers).status_code == 404
    assert client.get(f"/inventory/managedObjects/{device.pk}", **headers).status_code == 404
    assign_perm("remote_access_read", outsider, device)
    assert client.get("/identity/externalIds/c8y_Serial/gw-0001", **headers).status_code == 200


def test_repeated_failed_logins_lock_the_user_name_with_the_wait_in_the_message(client, operator):
    for _ in range(LOGIN.max_failures):
        oauth(client, "operator", "wrong")
    locked = oauth(client, "operator", "operator-pass-1")
    assert locked.status_code == 429
    assert "too many failed logins for this user: try again in 5 minutes" in locked.json()["message"]
    basic = base64.b64encode(b"operator:operator-pass-1").decode()
    refused = client.get("/service/remoteaccess/devices/1/configurations", HTTP_AUTHORIZATION=f"Basic {basic}")
    assert refused.status_code == 429
    page = client.post(reverse("login"), {"username": "operator", "password": "operator-pass-1"})
    assert "too many failed logins for this user: try again in 5 minutes" in page.content.decode()


def test_a_successful_login_clears_the_failure_count(client, operator):
    for _ in range(LOGIN.max_failures - 1):
        oauth(client, "operator", "wrong")
    assert oauth(client, "operator", "operator-pass-1").status_code == 200
    for _ in range(LOGIN.max_failures - 1):
        oauth(client, "operator", "wrong")
    assert oauth(client, "operator", "operator-pass-1").status_code == 200
