"""VNC sessions the way the page runs them, through the real agent and tunnel
to a real x11vnc on Xvfb, whose screen is painted red."""

import json
import struct
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from websockets.exceptions import ConnectionClosed

from endpoints.models import CredentialsType, Endpoint, Protocol
from sessions.models import Operation, Status
from tests.live import Agent, LineReader, fresh_device, need, open_session_page, wait_until
from tests.vnc import vnc_server

PASSWORD = "s3cretVN"
RED = (255, 0, 0)

pytestmark = pytest.mark.usefixtures("gateway_log")


@pytest.fixture(scope="module")
def servers(gateway):
    with vnc_server() as open_screen, vnc_server(PASSWORD) as locked_screen:
        yield {"gateway": gateway, "open": open_screen, "locked": locked_screen}


@pytest.fixture
def world(servers, tmp_path):
    device, user = fresh_device("gw-vnc", "Screen gateway")
    open_screen, locked_screen = servers["open"], servers["locked"]
    endpoints = {
        "open": Endpoint.objects.create(device=device, name="Open screen", protocol=Protocol.VNC,
                                        hostname=open_screen.host, port=open_screen.port),
        "locked": Endpoint.objects.create(device=device, name="HMI", protocol=Protocol.VNC,
                                          hostname=locked_screen.host, port=locked_screen.port,
                                          credentials_type=CredentialsType.PASS_ONLY, password=PASSWORD),
    }
    agent = Agent(tmp_path, servers["gateway"].url, device).start()
    agent.wait_online()
    client = Client()
    client.force_login(user)
    yield {"device": device, "client": client, "endpoints": endpoints, **servers}
    agent.stop()


class RfbPage:
    """The VNC page's WebSocket, speaking RFB as noVNC does."""

    def __init__(self, world: dict, endpoint: Endpoint) -> None:
        client, gateway = world["client"], world["gateway"]
        response = client.post(f"/devices/{endpoint.device_id}/remote-access/{endpoint.pk}/connect/")
        url = urlsplit(response.url)
        self.operation_id = int(url.path.strip("/").split("/")[-1])
        launch = parse_qs(url.query)["launch"][0]
        self.ws = open_session_page(gateway, self.operation_id, f"launch={launch}", client.cookies["sessionid"].value,
                                    max_size=8 * 1024 * 1024).__enter__()
        self.buffer = b""
        self.statuses: list[dict] = []

    def read(self, size: int, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < size:
            frame = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(frame, str):
                self.statuses.append(json.loads(frame))
            else:
                self.buffer += frame
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def handshake(self) -> tuple[int, int]:
        """noVNC's side of the handshake; the screen's width and height."""
        assert self.read(12) == b"RFB 003.008\n"
        self.ws.send(b"RFB 003.008\n")
        assert self.read(2) == b"\x01\x01", "the server offers no authentication to the browser"
        self.ws.send(b"\x01")
        assert self.read(4) == b"\x00\x00\x00\x00"
        self.ws.send(b"\x01")
        width, height = struct.unpack(">HH", self.read(4))
        self.read(16)
        self.read(struct.unpack(">I", self.read(4))[0])
        return width, height

    def first_pixel(self, width: int, height: int) -> tuple[int, int, int]:
        pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        self.ws.send(b"\x00\x00\x00\x00" + pixel_format)
        self.ws.send(struct.pack(">BxHi", 2, 1, 0))
        self.ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        message_type, rectangles = struct.unpack(">BxH", self.read(4))
        assert message_type == 0
        x, y, w, h, encoding = struct.unpack(">HHHHi", self.read(12))
        assert encoding == 0
        pixels = self.read(w * h * 4)
        blue, green, red = pixels[0], pixels[1], pixels[2]
        return red, green, blue

    def close(self) -> None:
        self.ws.close()

    def operation(self) -> Operation:
        return Operation.objects.get(pk=self.operation_id)


@pytest.mark.parametrize("screen", ["open", "locked"])
def test_the_page_gets_the_screen_without_ever_seeing_the_password(world, screen):
    page = RfbPage(world, world["endpoints"][screen])
    width, height = page.handshake()
    assert (width, height) == (320, 240)
    assert page.first_pixel(width, height) == RED
    states = [s["state"] for s in page.statuses]
    assert "handshake" in states and "connected" in states
    assert PASSWORD.encode() not in page.buffer
    page.close()
    wait_until(lambda: page.operation().ended is not None, 10, "the session's end")
    assert page.operation().status == Status.SUCCESSFUL


def test_a_wrong_vnc_password_fails_with_its_reason(world):
    endpoint = world["endpoints"]["locked"]
    endpoint.password = "wrongpw1"
    endpoint.save()
    page = RfbPage(world, endpoint)
    with pytest.raises(ConnectionClosed):
        page.read(12, timeout=20)
    message = next(s["message"] for s in page.statuses if s["state"] == "disconnected")
    assert message.startswith("VNC authentication failed")
    assert "wrongpw1" not in message
    record = page.operation()
    assert record.status == Status.FAILED and record.failure_reason.startswith("VNC authentication failed")


def test_a_browser_shows_the_remote_screen_and_types_into_it(world):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import chromium, screenshot

    screen = world["locked"]
    gateway = world["gateway"]
    xev = subprocess.Popen([need("xev"), "-display", f":{screen.display}", "-root", "-event", "keyboard"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    keys = LineReader(xev.stdout)
    try:
        with chromium() as driver:
            driver.get(f"{gateway.url}/accounts/login/")
            driver.find_element(By.NAME, "username").send_keys("tech")
            driver.find_element(By.NAME, "password").send_keys("tech-pass-1")
            driver.find_element(By.CSS_SELECTOR, "button[type=submit].primary").click()
            WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".userbox .username"))
            driver.get(f"{gateway.url}/devices/{world['device'].pk}/remote-access/")
            row = driver.find_element(By.XPATH, "//tr[td[normalize-space()='HMI']]")
            tabs = set(driver.window_handles)
            row.find_element(By.XPATH, ".//button[normalize-space()='Connect']").click()
            WebDriverWait(driver, 10).until(lambda d: len(d.window_handles) > len(tabs))
            driver.switch_to.window((set(driver.window_handles) - tabs).pop())
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "status").text == "connected")
            red = """
                const canvas = document.querySelector('#screen canvas');
                const data = canvas.getContext('2d').getImageData(20, 20, 1, 1).data;
                return [data[0], data[1], data[2]];
            """
            WebDriverWait(driver, 15).until(lambda d: tuple(d.execute_script(red)) == RED)
            screenshot(driver, "vnc-screen")
            canvas = driver.find_element(By.CSS_SELECTOR, "#screen canvas")
            canvas.click()
            canvas.send_keys("q")
            keys.wait_for(r"keysym 0x71, q\)", timeout=10)
    finally:
        xev.terminate()
        xev.wait(timeout=10)


def test_no_secret_reached_the_gateway_log(servers):
    """Runs after the sessions above, with the right and a wrong VNC password."""
    log = "\n".join(servers["gateway"].output.lines)
    assert "/ws/sessions/" in log, "the sessions above ran"
    for secret in (PASSWORD, "wrongpw1", "tech-pass-1"):
        assert secret not in log
