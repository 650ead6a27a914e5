"""Terminal sessions the way the page runs them, through the real agent and
tunnel: a logged-in user's Connect, the page's WebSocket with its launch
token, and a real OpenSSH sshd or telnetd behind the device."""

import json
import re
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from guardian.shortcuts import assign_perm
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from endpoints.models import CredentialsType, Device, Endpoint, Protocol, RemoteAccessSettings
from sessions.models import Operation, Status
from tests.live import Agent, fresh_device, need, open_session_page, wait_until
from tests.sshd import Sshd
from tests.telnetd import telnetd

pytestmark = pytest.mark.usefixtures("gateway_log")


@pytest.fixture(scope="module")
def servers(gateway):
    with Sshd() as sshd, telnetd() as telnet:
        yield {"gateway": gateway, "sshd": sshd, "telnetd": telnet}


@pytest.fixture
def world(servers, tmp_path):
    RemoteAccessSettings.objects.all().delete()
    device, user = fresh_device("gw-term", "Terminal gateway")
    sshd, telnet = servers["sshd"], servers["telnetd"]
    ssh = Endpoint.objects.create(
        device=device, name="Shell", protocol=Protocol.SSH, hostname=sshd.host, port=sshd.port,
        credentials_type=CredentialsType.USER_PASS, username=sshd.user, password=sshd.password,
    )
    telnet_endpoint = Endpoint.objects.create(
        device=device, name="Console", protocol=Protocol.TELNET, hostname=telnet.host, port=telnet.port,
    )
    agent = Agent(tmp_path, servers["gateway"].url, device).start()
    agent.wait_online()
    client = Client()
    client.force_login(user)
    yield {"device": device, "user": user, "ssh": ssh, "telnet": telnet_endpoint, "client": client, **servers}
    agent.stop()


class Page:
    """The terminal page's WebSocket, as terminal.js uses it."""

    def __init__(self, world: dict, endpoint: Endpoint, cols: int = 80, rows: int = 24, launch: str = "") -> None:
        client = world["client"]
        gateway = world["gateway"]
        response = client.post(f"/devices/{endpoint.device_id}/remote-access/{endpoint.pk}/connect/")
        url = urlsplit(response.url)
        self.operation_id = int(url.path.strip("/").split("/")[-1])
        self.launch = launch or parse_qs(url.query)["launch"][0]
        self.ws = open_session_page(gateway, self.operation_id, f"launch={self.launch}&cols={cols}&rows={rows}",
                                    client.cookies["sessionid"].value).__enter__()
        self.screen = b""
        self.statuses: list[dict] = []
        self.host_keys: list[dict] = []

    def _take(self, timeout: float) -> None:
        frame = self.ws.recv(timeout=timeout)
        if isinstance(frame, bytes):
            self.screen += frame
        else:
            message = json.loads(frame)
            (self.statuses if message["type"] == "status" else self.host_keys).append(message)

    def wait_for_output(self, pattern: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        start = len(self.screen)
        while not re.search(pattern, self.screen[start:]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {pattern!r} in {self.screen[-500:]!r}")
            self._take(remaining)
        return self.screen[start:]

    def wait_for_state(self, state: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while not any(s["state"] == state for s in self.statuses):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no status {state!r}; got {self.statuses}")
            self._take(remaining)
        return next(s for s in self.statuses if s["state"] == state)

    def type(self, data: bytes) -> None:
        self.ws.send(data)

    def resize(self, cols: int, rows: int) -> None:
        self.ws.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    def close(self) -> None:
        self.ws.close()

    def operation(self) -> Operation:
        return Operation.objects.get(pk=self.operation_id)


def log_in_telnet(page: Page, world: dict) -> None:
    page.wait_for_output(rb"login: ?$", timeout=20)
    page.type(world["telnetd"].user.encode() + b"\r")
    page.wait_for_output(rb"[Pp]assword: ?$")
    page.type(world["telnetd"].password.encode() + b"\r")
    page.wait_for_output(rb"[$#] ?$", timeout=20)


def test_an_ssh_session_runs_commands_with_unicode_ctrl_c_and_resize(world):
    page = Page(world, world["ssh"], cols=100, rows=30)
    page.wait_for_state("connected")
    assert [s["state"] for s in page.statuses][:3] == ["connecting", "device-connected", "authenticating"]
    page.type(b"echo $((6*7))\r")
    assert b"42" in page.wait_for_output(rb"\b42\b")
    page.type("printf 'ü€😀\\n'\r".encode())
    page.wait_for_output("ü€😀".encode())
    page.type(b"stty size\r")
    page.wait_for_output(rb"30 100")
    page.resize(120, 40)
    page.type(b"stty size\r")
    page.wait_for_output(rb"40 120")
    # The marker comes from the process that Ctrl-C must interrupt, so the
    # key cannot reach the shell before the sleep runs.
    page.type(b"sh -c 'echo S$((2+3)); exec sleep 100'\r")
    page.wait_for_output(rb"S5")
    page.type(b"\x03")
    page.type(b"echo after-$((1+1))\r")
    page.wait_for_output(rb"after-2", timeout=5)
    page.type(b"exit\r")
    assert "the remote shell exited" in page.wait_for_state("disconnected")["message"]
    page.close()
    wait_until(lambda: page.operation().bytes_from_device > 0, 10, "the device side's byte count")
    operation = page.operation()
    assert operation.status == Status.SUCCESSFUL and operation.ended is not None
    assert operation.bytes_to_device > 0


def ssh2_rsa_key(folder) -> str:
    """An RSA key in the ssh.com ("SSH2") layout, made by ssh-keygen and puttygen."""
    path = folder / "rsa"
    subprocess.run([need("ssh-keygen"), "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(path)], check=True)
    subprocess.run([need("puttygen"), str(path), "-O", "private-sshcom", "-o", str(folder / "rsa.ssh2")],
                   check=True, capture_output=True)
    return (folder / "rsa.ssh2").read_text()


@pytest.mark.parametrize("key", ["generated ed25519", "ssh2 rsa"])
def test_an_ssh_session_logs_in_with_a_key_pair_through_the_agent(world, tmp_path, client, key):
    """The key is stored the way the endpoint form stores it."""
    client.force_login(User.objects.get(username="tech"))
    text = "" if key == "generated ed25519" else ssh2_rsa_key(tmp_path)
    owner = User.objects.create_user("keyowner", password="owner-pass-1")
    assign_perm("remote_access_admin", owner, world["device"])
    client.force_login(owner)
    form = {"name": "Keyed", "hostname": world["sshd"].host, "port": world["sshd"].port,
            "credentials_type": "KEY_PAIR", "username": world["sshd"].user, "private_key": text}
    if not text:
        form["generate_key_pair"] = "on"
    response = client.post(f"/devices/{world['device'].pk}/remote-access/add/ssh/", form)
    assert response.status_code == 302, response.content.decode()
    endpoint = Endpoint.objects.get(name="Keyed")
    world["sshd"].authorize(endpoint.public_key)
    page = Page(world, endpoint)
    page.wait_for_state("connected")
    page.type(b"echo $((6*7))\r")
    page.wait_for_output(rb"\b42\b")
    page.close()


def test_an_unverified_host_key_is_shown_and_saved_on_first_use_when_the_setting_is_on(world):
    RemoteAccessSettings.objects.update_or_create(pk=1, defaults={"auto_save_host_key": True})
    page = Page(world, world["ssh"])
    page.wait_for_state("connected")
    page.type(b"echo $((6*7))\r")
    page.wait_for_output(rb"\b42\b")
    assert page.host_keys == [{"type": "host-key", "fingerprint": world["sshd"].fingerprints["ed25519"],
                               "verified": False, "saved": True}]
    world["ssh"].refresh_from_db()
    assert world["ssh"].host_key == world["sshd"].host_keys["ed25519"]
    page.close()
    again = Page(world, world["ssh"])
    again.wait_for_state("connected")
    again.type(b"echo $((6*7))\r")
    again.wait_for_output(rb"\b42\b")
    assert again.host_keys[0]["verified"] is True
    again.close()
    listing = world["client"].get(f"/devices/{world['device'].pk}/remote-access/").content.decode()
    assert world["sshd"].fingerprints["ed25519"] in listing


def test_the_host_key_is_not_saved_when_the_setting_is_off(world):
    page = Page(world, world["ssh"])
    page.wait_for_state("connected")
    page.type(b"echo $((6*7))\r")
    page.wait_for_output(rb"\b42\b")
    assert page.host_keys == [{"type": "host-key", "fingerprint": world["sshd"].fingerprints["ed25519"],
                               "verified": False, "saved": False}]
    page.close()
    world["ssh"].refresh_from_db()
    assert world["ssh"].host_key == ""


def test_a_changed_host_key_is_refused_and_fails_the_operation(world):
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    Endpoint.objects.filter(pk=world["ssh"].pk).update(host_key=other)
    page = Page(world, world["ssh"])
    message = page.wait_for_state("disconnected")["message"]
    assert message.startswith("host key mismatch: expected SHA256:")
    assert f"got {world['sshd'].fingerprints['ed25519']}" in message
    page.close()
    operation = page.operation()
    assert operation.status == Status.FAILED and operation.failure_reason == message


def test_a_wrong_password_fails_with_a_message_a_technician_understands(world):
    Endpoint.objects.filter(pk=world["ssh"].pk).update(password="")
    endpoint = Endpoint.objects.get(pk=world["ssh"].pk)
    endpoint.password = "not-the-password"
    endpoint.save()
    page = Page(world, endpoint)
    message = page.wait_for_state("disconnected")["message"]
    assert "authentication failed" in message
    assert "not-the-password" not in message
    page.close()
    assert page.operation().status == Status.FAILED


def test_a_telnet_session_logs_in_and_follows_resizes(world):
    page = Page(world, world["telnet"], cols=90, rows=20)
    page.wait_for_state("connected")
    log_in_telnet(page, world)
    page.type(b"echo $((6*7))\r")
    page.wait_for_output(rb"\b42\b")
    page.type(b"stty size\r")
    page.wait_for_output(rb"20 90")
    page.resize(132, 43)
    page.type(b"stty size\r")
    page.wait_for_output(rb"43 132")
    page.type(b"exit\r")
    page.wait_for_state("disconnected")
    page.close()
    assert page.operation().status == Status.SUCCESSFUL


def test_a_launch_token_opens_one_session_only(world):
    first = Page(world, world["ssh"])
    first.wait_for_state("connected")
    gateway, client = world["gateway"], world["client"]
    with open_session_page(gateway, first.operation_id, f"launch={first.launch}",
                           client.cookies["sessionid"].value) as second:
        status = json.loads(second.recv(timeout=10))
        assert status["state"] == "disconnected" and "already used" in status["message"]
        with pytest.raises(ConnectionClosed) as closed:
            second.recv(timeout=10)
        assert closed.value.rcvd.code == 4403
    first.close()


def test_a_page_websocket_from_another_site_is_refused(world):
    gateway, client = world["gateway"], world["client"]
    response = client.post(f"/devices/{world['device'].pk}/remote-access/{world['ssh'].pk}/connect/")
    url = urlsplit(response.url)
    operation_id = url.path.strip("/").split("/")[-1]
    for origin in ["http://evil.example", None]:
        headers = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
        if origin:
            headers["Origin"] = origin
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{gateway.ws_url}/ws/sessions/{operation_id}/?{url.query}", additional_headers=headers,
                    open_timeout=10)
        assert refused.value.response.status_code == 403


def test_an_offline_device_says_so_on_the_page(world, servers):
    Device.objects.filter(pk=world["device"].pk).update(is_online=False, control_channel="")
    page = Page(world, world["ssh"])
    assert page.wait_for_state("disconnected")["message"] == "device is offline"
    page.close()
    assert page.operation().failure_reason == "device is offline"


# --- in a real browser --------------------------------------------------------


def open_terminal_in_browser(driver, world, endpoint) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    gateway = world["gateway"]
    driver.get(f"{gateway.url}/accounts/login/")
    driver.find_element(By.NAME, "username").send_keys("tech")
    driver.find_element(By.NAME, "password").send_keys("tech-pass-1")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit].primary").click()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".userbox .username"))
    driver.get(f"{gateway.url}/devices/{world['device'].pk}/remote-access/")
    row = driver.find_element(By.XPATH, f"//tr[td[normalize-space()='{endpoint.name}']]")
    tabs = set(driver.window_handles)
    row.find_element(By.XPATH, ".//button[normalize-space()='Connect']").click()
    WebDriverWait(driver, 10).until(lambda d: len(d.window_handles) > len(tabs))
    driver.switch_to.window((set(driver.window_handles) - tabs).pop())
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "status").text == "connected")


def terminal_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, ".xterm-rows").text


def type_in_terminal(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys(text)


def wait_for_terminal(driver, pattern: str, timeout: float = 15) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(lambda d: re.search(pattern, terminal_text(d), re.MULTILINE))
    except TimeoutException:
        raise AssertionError(f"no {pattern!r} on the screen:\n{terminal_text(driver)}") from None


def test_a_browser_runs_a_command_over_ssh(world):
    from tests.browser import chromium, screenshot

    with chromium() as driver:
        open_terminal_in_browser(driver, world, world["ssh"])
        assert driver.title.startswith("[connected] Shell on Terminal gateway")
        type_in_terminal(driver, "echo $((6*7))\n")
        wait_for_terminal(driver, r"^42\s*$")
        screenshot(driver, "ssh-terminal")


def test_a_browser_logs_in_and_runs_a_command_over_telnet(world):
    from tests.browser import chromium, screenshot

    with chromium() as driver:
        open_terminal_in_browser(driver, world, world["telnet"])
        wait_for_terminal(driver, r"login:\s*$", timeout=20)
        type_in_terminal(driver, world["telnetd"].user + "\n")
        wait_for_terminal(driver, r"[Pp]assword:\s*$")
        type_in_terminal(driver, world["telnetd"].password + "\n")
        wait_for_terminal(driver, r"[$#]\s*$", timeout=20)
        type_in_terminal(driver, "echo $((6*7))\n")
        wait_for_terminal(driver, r"^42\s*$")
        screenshot(driver, "telnet-terminal")


def test_no_secret_reached_the_gateway_log(servers):
    """Runs after the sessions above, which used passwords and key pairs."""
    log = "\n".join(servers["gateway"].output.lines)
    assert "ra-ssh-test" in log or "Beginning auth" in log, "the sessions above ran"
    for secret in (servers["sshd"].password, "not-the-password", "tech-pass-1", "PRIVATE KEY"):
        assert secret not in log
