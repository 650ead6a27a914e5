"""No secret leaks: every kind of credential is used once through the real
gateway and agent (right and wrong), then every surface a person or a log
reader could see is searched for every secret, in plain text, base64 and hex.

Credentials: users' login passwords, an API token, a login JWT with its XSRF
value, a device's registration one-time password and tokens, SSH passwords
and private keys (generated and uploaded), VNC passwords, connection keys
and launch tokens. Surfaces: every page and API route (from the URL map) as
an admin and as a READ user, the Django admin's pages of every object, every
field of every audit record, every message the page WebSockets got, the
gateway's, the agent's and the register command's whole output, and the raw
database file (where secrets may only be encrypted or hashed).
"""

import base64
import hashlib
import itertools
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from guardian.shortcuts import assign_perm
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from agent.config import load_config
from endpoints.models import CredentialsType, Device, Endpoint, Protocol
from portal.models import ApiToken
from sessions.models import Operation, Status
from tests.live import ROOT, Agent, Gateway, live_gateway, wait_until
from tests.sshd import Sshd, keygen
from tests.test_authorization_matrix import PARAMETER, http_routes
from tests.test_terminal_sessions import Page
from tests.test_vnc_sessions import RfbPage
from tests.vnc import VncServer, vnc_server

SERIAL = "gw-secrets"
VNC_PASSWORD = "Vq7#kLm2"
WRONG_VNC_PASSWORD = "Wz9!pRt4"
WRONG_SSH_PASSWORD = "wrong-ssh-Pw-51xq"
ADMIN_PASSWORD = "admin-Pw-83kq-zz"
READER_PASSWORD = "reader-Pw-29fd-yy"
WRONG_LOGIN_PASSWORD = "not-the-Pw-77hh"
OTP = "otp-Reg-4417-vv"
WRONG_OTP = "otp-Bad-9035-ww"
# What a connection key and a launch token look like (secrets.token_urlsafe(24)).
KEY_SHAPED = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32}(?![A-Za-z0-9_-])")


def forms(secret: str, username: str = "") -> set[str]:
    """The secret as it could appear: plain, URL-quoted, base64 (also as an
    HTTP Basic pair with its user name) and hex."""
    raw = secret.encode()
    found = {secret, quote(secret, safe=""), raw.hex(), base64.b64encode(raw).decode().rstrip("="),
             base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    if username:
        found.add(base64.b64encode(f"{username}:{secret}".encode()).decode().rstrip("="))
    return {form for form in found if len(form) >= 8}


def key_lines(private_key: str) -> list[str]:
    """A private key's body lines: each is secret on its own."""
    return [line for line in private_key.splitlines() if len(line) >= 20 and "PRIVATE KEY" not in line]


def leaks(secrets: dict[str, set[str]], surfaces: dict[str, str | bytes]) -> list[str]:
    found = []
    for (surface, text), (name, variants) in itertools.product(surfaces.items(), secrets.items()):
        haystack = text if isinstance(text, bytes) else text.encode(errors="replace")
        for variant in variants:
            if variant.encode() in haystack:
                found.append(f"{name} ({variant[:12]}…) in {surface}")
                break
    return found


def csrf_session(gateway: Gateway) -> requests.Session:
    browser = requests.Session()
    browser.get(f"{gateway.url}/accounts/login/", timeout=10).raise_for_status()
    return browser


def log_in(gateway: Gateway, username: str, password: str) -> requests.Session:
    """A form login on the gateway, as a browser does it."""
    browser = csrf_session(gateway)
    response = browser.post(f"{gateway.url}/accounts/login/", timeout=20, allow_redirects=False, data={
        "username": username, "password": password, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"Referer": f"{gateway.url}/accounts/login/"})
    assert response.status_code == (302 if password != WRONG_LOGIN_PASSWORD else 200), response.text[-500:]
    return browser


def issue_api_token(gateway: Gateway, browser: requests.Session) -> str:
    """Made on the profile page, the one response that shows it."""
    page = browser.get(f"{gateway.url}/accounts/profile/", timeout=10)
    page.raise_for_status()
    response = browser.post(f"{gateway.url}/accounts/profile/", timeout=10, data={
        "name": "laptop", "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        headers={"Referer": f"{gateway.url}/accounts/profile/"})
    return re.search(r"rag_[A-Za-z0-9_-]+", response.text).group(0)


def passthrough_banner(gateway: Gateway, device: Device, endpoint: Endpoint, query: str = "",
                       headers: dict | None = None) -> bytes:
    """Open a passthrough tunnel to the sshd and read its banner."""
    url = f"{gateway.ws_url}/service/remoteaccess/client/{device.pk}/configurations/{endpoint.pk}{query}"
    with connect(url, additional_headers=headers or {}, open_timeout=10) as ws:
        return ws.recv(timeout=20)


def register_agent(gateway: Gateway, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", "register", "--config", str(config), "--server", gateway.url,
         "--device-id", SERIAL, "--one-time-password", OTP, "-v"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def add_ssh_endpoint(client: Client, device: Device, form: dict) -> Endpoint:
    """Through the endpoint form, as an admin stores it."""
    response = client.post(f"/devices/{device.pk}/remote-access/add/ssh/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    return Endpoint.objects.get(device=device, name=form["name"])


def wait_ended(operation_id: int) -> None:
    wait_until(lambda: Operation.objects.get(pk=operation_id).ended is not None, 15, f"the end of {operation_id}")


class Evidence:
    """The secrets used so far, every form of each, and what the client saw."""

    def __init__(self) -> None:
        self.secrets: dict[str, set[str]] = {}
        self.seen: dict[str, str | bytes] = {}
        self.launches: list[str] = []


def use_user_credentials(world: dict, evidence: Evidence) -> tuple[str, str, str]:
    """Form logins (one wrong), a login JWT and an API token: (API token, JWT, XSRF)."""
    gateway, secrets = world["gateway"], evidence.secrets
    secrets["admin password"] = forms(ADMIN_PASSWORD, "admin")
    secrets["reader password"] = forms(READER_PASSWORD, "reader")
    secrets["wrong login password"] = forms(WRONG_LOGIN_PASSWORD, "reader")
    log_in(gateway, "reader", WRONG_LOGIN_PASSWORD)
    reader_browser = log_in(gateway, "reader", READER_PASSWORD)
    log_in(gateway, "admin", ADMIN_PASSWORD)
    oauth = requests.post(f"{gateway.url}/tenant/oauth", timeout=20,
                          data={"grant_type": "PASSWORD", "username": "t1/reader", "password": READER_PASSWORD})
    oauth.raise_for_status()
    jwt, xsrf = oauth.cookies["authorization"], oauth.cookies["XSRF-TOKEN"]
    secrets["login JWT"] = forms(jwt)
    secrets["login JWT signature"] = forms(jwt.rsplit(".", 1)[1])
    secrets["XSRF token"] = forms(xsrf)
    current = requests.get(f"{gateway.url}/user/currentUser", headers={"Authorization": f"Bearer {jwt}"}, timeout=10)
    assert current.status_code == 200 and current.json()["userName"] == "reader", current.text
    evidence.seen["/user/currentUser (JWT)"] = current.text
    token = issue_api_token(gateway, reader_browser)
    secrets["API token"] = forms(token, "reader")
    return token, jwt, xsrf


def register_and_start_agent(world: dict, evidence: Evidence, folder: Path) -> None:
    """A wrong one-time password, the right one through `agent register`, then
    the agent running with a token of its own."""
    gateway, device, secrets = world["gateway"], world["device"], evidence.secrets
    secrets["registration one-time password"] = forms(OTP, SERIAL)
    secrets["wrong one-time password"] = forms(WRONG_OTP, SERIAL)
    refused = requests.post(f"{gateway.url}/service/remoteaccess/registration", timeout=10,
                            json={"deviceId": SERIAL, "oneTimePassword": WRONG_OTP})
    assert refused.status_code == 401
    evidence.seen["refused registration"] = refused.text
    registered = register_agent(gateway, folder / "registered.toml")
    assert registered.returncode == 0, registered.stdout + registered.stderr
    evidence.seen["agent register output"] = registered.stdout + registered.stderr
    secrets["device token from registration"] = forms(load_config(folder / "registered.toml").password,
                                                      device.username)
    agent = Agent(folder, gateway.url, Device.objects.get(pk=device.pk)).start()
    world["agent"] = agent
    agent.wait_online()
    secrets["device token"] = forms(load_config(agent.path).password, device.username)


def ssh_endpoints(world: dict, evidence: Evidence, sshd: Sshd, folder: Path) -> dict[str, Endpoint]:
    """A password, a wrong password, a generated and an uploaded key."""
    device, admin_client, secrets = world["device"], world["admin_client"], evidence.secrets
    secrets["SSH password"] = forms(sshd.password, sshd.user)
    secrets["wrong SSH password"] = forms(WRONG_SSH_PASSWORD, sshd.user)
    private_key, public_key = keygen(folder / "uploaded", "ed25519")
    sshd.authorize(public_key)
    target = {"hostname": sshd.host, "port": sshd.port, "username": sshd.user}
    endpoints = {
        "password": add_ssh_endpoint(admin_client, device, {
            "name": "Shell", "credentials_type": "USER_PASS", "password": sshd.password, **target}),
        "wrong password": add_ssh_endpoint(admin_client, device, {
            "name": "Wrong shell", "credentials_type": "USER_PASS", "password": WRONG_SSH_PASSWORD, **target}),
        "generated key": add_ssh_endpoint(admin_client, device, {
            "name": "Generated key", "credentials_type": "KEY_PAIR", "generate_key_pair": "on", **target}),
        "uploaded key": add_ssh_endpoint(admin_client, device, {
            "name": "Uploaded key", "credentials_type": "KEY_PAIR", "private_key": private_key, **target}),
    }
    generated = endpoints["generated key"]
    sshd.authorize(generated.public_key)
    for name, text in (("generated private key", generated.private_key), ("uploaded private key", private_key)):
        secrets[name] = set(key_lines(text))
        assert secrets[name], name
    return endpoints


def run_terminal_pages(world: dict, evidence: Evidence, endpoints: dict[str, Endpoint]) -> None:
    """Logged in with each, refused with the wrong password and a reused link."""
    pages = []
    for name in ("password", "generated key", "uploaded key"):
        page = Page(world, endpoints[name])
        page.wait_for_state("connected")
        page.type(b"echo $((6*7))\r")
        page.wait_for_output(rb"\b42\b")
        page.close()
        pages.append(page)
    wrong = Page(world, endpoints["wrong password"])
    wrong.wait_for_state("disconnected")
    reused = Page(world, endpoints["password"])
    reused.close()
    again = Page(world, endpoints["password"], launch=reused.launch)
    again.wait_for_state("disconnected")
    pages += [wrong, reused, again]
    for index, page in enumerate(pages):
        evidence.launches.append(page.launch)
        evidence.seen[f"terminal page {index} messages"] = json.dumps([page.statuses, page.host_keys])


def run_vnc_pages(world: dict, evidence: Evidence, screen: VncServer) -> None:
    """The right VNC password and a wrong one."""
    evidence.secrets["VNC password"] = forms(VNC_PASSWORD)
    evidence.secrets["wrong VNC password"] = forms(WRONG_VNC_PASSWORD)
    target = {"device": world["device"], "protocol": Protocol.VNC, "hostname": screen.host, "port": screen.port,
              "credentials_type": CredentialsType.PASS_ONLY}
    vnc = Endpoint.objects.create(name="HMI", password=VNC_PASSWORD, **target)
    wrong_vnc = Endpoint.objects.create(name="HMI wrong", password=WRONG_VNC_PASSWORD, **target)
    rfb = RfbPage(world, vnc)
    assert rfb.handshake() == (320, 240)
    rfb.close()
    refused = RfbPage(world, wrong_vnc)
    with pytest.raises(ConnectionClosed):
        refused.read(12, timeout=20)
    for index, page in enumerate((rfb, refused)):
        evidence.seen[f"VNC page {index} messages"] = json.dumps(page.statuses) + repr(page.buffer)


def run_passthrough_tunnels(world: dict, sshd: Sshd, token: str, jwt: str, xsrf: str) -> None:
    """Every way a local proxy authenticates, and a wrong password."""
    gateway, device = world["gateway"], world["device"]
    proxy = Endpoint.objects.create(device=device, name="Proxy", protocol=Protocol.PASSTHROUGH,
                                    hostname=sshd.host, port=sshd.port)
    basic = base64.b64encode(f"reader:{READER_PASSWORD}".encode()).decode()
    ways = {
        "API token (Bearer)": ("", {"Authorization": f"Bearer {token}"}),
        "API token (query)": (f"?token={token}", {}),
        "JWT (Bearer)": ("", {"Authorization": f"Bearer {jwt}"}),
        "JWT (cookie)": ("", {"Cookie": f"authorization={jwt}", "X-XSRF-TOKEN": xsrf}),
        "JWT (query)": (f"?token={jwt}&XSRF-TOKEN={xsrf}", {}),
        "password (Basic)": ("", {"Authorization": f"Basic {basic}"}),
    }
    for way, (query, headers) in ways.items():
        assert passthrough_banner(gateway, device, proxy, query, headers).startswith(b"SSH-2.0-"), way
    wrong_basic = base64.b64encode(f"reader:{WRONG_LOGIN_PASSWORD}".encode()).decode()
    with pytest.raises(InvalidStatus):
        passthrough_banner(gateway, device, proxy, headers={"Authorization": f"Basic {wrong_basic}"})


def run_sessions(world: dict, sshd: Sshd, screen: VncServer, folder: Path) -> Evidence:
    """Every credential through the gateway and the agent; what each showed."""
    evidence = Evidence()
    token, jwt, xsrf = use_user_credentials(world, evidence)
    register_and_start_agent(world, evidence, folder)
    run_terminal_pages(world, evidence, ssh_endpoints(world, evidence, sshd, folder))
    run_vnc_pages(world, evidence, screen)
    run_passthrough_tunnels(world, sshd, token, jwt, xsrf)
    for operation in Operation.objects.filter(tunnel_connected_at__isnull=False):
        wait_ended(operation.pk)
    for index, launch in enumerate(evidence.launches):
        evidence.secrets[f"launch token {index}"] = forms(launch)
    return evidence


# Each ASGI server writes its own access log.
@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def world(request, django_db_setup, django_db_blocker, tmp_path_factory):
    with (live_gateway(django_db_blocker, ASGI_SERVER=request.param) as gateway, Sshd() as sshd,
          vnc_server(VNC_PASSWORD) as screen):
        device = Device.objects.create(serial=SERIAL, name="Secrets gateway")
        device.issue_one_time_password(timedelta(hours=1), OTP)
        device.save()
        User.objects.create_superuser("admin", "", ADMIN_PASSWORD)
        reader = User.objects.create_user("reader", password=READER_PASSWORD)
        assign_perm("remote_access_read", reader, device)
        admin_client, reader_client = Client(), Client()
        admin_client.force_login(User.objects.get(username="admin"))
        reader_client.force_login(reader)
        world = {"gateway": gateway, "device": device, "admin_client": admin_client,
                 "reader_client": reader_client, "client": reader_client}
        try:
            world["run"] = run_sessions(world, sshd, screen, tmp_path_factory.mktemp("secrets"))
            yield world
        finally:
            if "agent" in world:
                world["agent"].stop()


def route_values() -> dict[str, list[str]]:
    device = Device.objects.get(serial=SERIAL)
    return {
        "device_id": [str(device.pk)],
        "endpoint_id": [str(pk) for pk in Endpoint.objects.values_list("pk", flat=True)],
        "operation_id": [str(pk) for pk in Operation.objects.values_list("pk", flat=True)],
        "protocol": [protocol.lower() for protocol in Protocol.values],
        "token_id": [str(pk) for pk in ApiToken.objects.values_list("pk", flat=True)],
        "id_type": ["c8y_Serial"],
        "serial": [device.serial],
        "connection_key": ["not-a-key"],
    }


def every_url() -> list[str]:
    """Each route with every combination of its parameters, and the admin's
    list and change page of every registered model's every object."""
    values = route_values()
    urls = []
    for route in http_routes():
        names = [match["name"] for match in PARAMETER.finditer(route)]
        for combination in itertools.product(*(values[name] for name in names)):
            filled = dict(zip(names, combination))
            urls.append(PARAMETER.sub(lambda match, filled=filled: filled[match["name"]], route))
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        urls.append(base)
        urls += [f"{base}{pk}/change/" for pk in model.objects.values_list("pk", flat=True)]
    return urls


def test_the_sessions_used_every_credential(world):
    """The sweep below means something only if the secrets were used."""
    records = Operation.objects.all()
    successful = {op.endpoint_name for op in records if op.status == Status.SUCCESSFUL}
    assert {"Shell", "Generated key", "Uploaded key", "HMI", "Proxy"} <= successful
    failed = {op.endpoint_name: op.failure_reason for op in records if op.status == Status.FAILED}
    assert "Wrong shell" in failed and failed["HMI wrong"].startswith("VNC authentication failed")
    assert records.filter(endpoint_name="Proxy", status=Status.SUCCESSFUL).count() == 6


def test_no_page_or_api_route_shows_a_secret(world):
    secrets = world["run"].secrets
    seen = {}
    for who in ("admin", "reader"):
        client = world[f"{who}_client"]
        for url in every_url():
            response = client.get(url, HTTP_ACCEPT="text/html,application/json")
            assert response.status_code < 500, f"{who} GET {url}: {response.status_code}"
            body = b"".join(response) if response.streaming else response.content
            seen[f"{who} GET {url} ({response.status_code})"] = body + repr(response.headers).encode()
    answered = [surface for surface in seen if surface.endswith("(200)")]
    for shown in ("admin GET /admin/endpoints/endpoint/", "reader GET /service/remoteaccess/devices/",
                  "reader GET /inventory/managedObjects/", "reader GET /sessions/"):
        assert any(surface.startswith(shown) for surface in answered), f"no {shown}… answered 200"
    assert leaks(secrets, seen) == []


def test_no_audit_record_holds_a_secret(world):
    records = list(Operation.objects.order_by("pk").values())
    assert records
    surfaces = {f"operation {row['id']}": json.dumps(row, default=str) for row in records}
    assert leaks(world["run"].secrets, surfaces) == []


def test_no_page_websocket_message_shows_a_secret(world):
    assert leaks(world["run"].secrets, world["run"].seen) == []


def test_no_log_shows_a_secret(world):
    gateway, agent = world["gateway"], world["agent"]
    logs = {"gateway log": "\n".join(gateway.output.lines), "agent log": "\n".join(agent.output.lines)}
    assert "operation" in logs["gateway log"] and logs["agent log"]
    assert leaks(world["run"].secrets, logs) == []


def test_no_log_shows_a_connection_key(world):
    """The keys themselves are only in memory and in the 530 line: find any
    key-shaped word whose hash is a key's or a launch token's."""
    hashes = set(Operation.objects.exclude(connection_key_hash="").values_list("connection_key_hash", flat=True))
    assert len(hashes) >= 10
    hashes |= {hashlib.sha256(launch.encode()).hexdigest() for launch in world["run"].launches}
    logs = {"gateway log": world["gateway"].output.lines, "agent log": world["agent"].output.lines}
    assert any("/service/remoteaccess/device/[redacted]" in line for line in logs["gateway log"]), \
        "the access log still shows each tunnel, without its key"
    found = [f"{name}: {line[:160]}" for name, lines in logs.items() for line in lines
             for word in KEY_SHAPED.findall(line) if hashlib.sha256(word.encode()).hexdigest() in hashes]
    assert found == []


def test_the_database_file_holds_secrets_only_encrypted(world):
    path = Path(settings.DATABASES["default"]["NAME"])
    files = {str(candidate): candidate.read_bytes() for candidate in (path, Path(f"{path}-wal"))
             if candidate.exists()}
    assert files and any(len(data) > 0 for data in files.values())
    assert leaks(world["run"].secrets, files) == []
