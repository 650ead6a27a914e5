"""Scale-out for real: two gateway workers sharing one PostgreSQL and one
redis-server. A technician's terminal page is on worker A, the device's agent
and its tunnel on worker B, the SSH server a real sshd behind the device.

The tests' own database connection is pytest-django's SQLite, so everything
that touches PostgreSQL (the schema, the test data, the operation's outcome)
goes through `manage.py` subprocesses with the workers' environment.
"""

import http.cookiejar
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.live import ROOT, Gateway, LineReader, open_session_page, redis_server, server_env
from tests.postgres import postgres_server
from tests.sshd import Sshd

USERNAME = "tech"
PASSWORD = "tech-pass-1"
RESULT = "RESULT "


def manage_shell(env: dict[str, str], script: str, params: dict, timeout: float = 60) -> dict:
    """Run `script` in `manage.py shell` against the workers' database; it
    receives `params` as PARAMS and prints its answer as `RESULT <json>`."""
    command = f"import json\nPARAMS = json.loads({json.dumps(params)!r})\n{script}"
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"manage.py shell failed:\n{done.stdout}\n{done.stderr}"
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    assert lines, f"no result from manage.py shell:\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1][len(RESULT):])


SETUP = """
from django.contrib.auth.models import User
from django.db import connection
from guardian.shortcuts import assign_perm

from agent.config import AgentConfig, save_config
from endpoints.models import CredentialsType, Device, Endpoint, Protocol

device = Device.objects.create(serial="gw-multi", name="Multi-worker gateway")
user = User.objects.create_user(PARAMS["username"], password=PARAMS["password"])
assign_perm("remote_access_read", user, device)
sshd = PARAMS["sshd"]
endpoint = Endpoint.objects.create(
    device=device, name="Shell", protocol=Protocol.SSH, hostname=sshd["host"], port=sshd["port"],
    credentials_type=CredentialsType.USER_PASS, username=sshd["user"], password=sshd["password"],
)
token = device.issue_token()
device.save(update_fields=["token_hash", "otp_hash", "otp_expires_at", "registered_at"])
save_config(AgentConfig(server=PARAMS["server"], device_id=device.serial, username=device.username,
                        password=token, allow=["127.0.0.0/8"]), PARAMS["config"])
print("RESULT " + json.dumps({"device": device.pk, "endpoint": endpoint.pk, "user": user.pk,
                              "database": connection.vendor}))
"""

OUTCOME = """
import time
from sessions.models import Operation, Status

deadline = time.monotonic() + PARAMS["timeout"]
while True:
    operation = Operation.objects.get(pk=PARAMS["operation"])
    if operation.status not in (Status.PENDING, Status.EXECUTING) and operation.bytes_from_device > 0:
        break
    if time.monotonic() > deadline:
        break
    time.sleep(0.1)  # the other processes' writes announce nothing to wait on
print("RESULT " + json.dumps({"status": operation.status, "failure_reason": operation.failure_reason,
                              "ended": operation.ended is not None, "device": operation.device_id,
                              "bytes_to_device": operation.bytes_to_device,
                              "bytes_from_device": operation.bytes_from_device}))
"""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """A logged-in browser's HTTP side: urllib with a cookie jar, no redirects followed."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def cookie(self, name: str) -> str:
        return next(cookie.value for cookie in self.jar if cookie.name == name)

    def request(self, path: str, form: dict | None = None) -> tuple[int, dict, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base_url + path, data=data, timeout=15) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode(errors="replace")

    def log_in(self, username: str, password: str) -> None:
        status, _, page = self.request("/accounts/login/")
        assert status == 200, page
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        status, _, page = self.request(
            "/accounts/login/", {"csrfmiddlewaretoken": token, "username": username, "password": password})
        assert status == 302, f"the login was refused ({status}):\n{page[-2000:]}"
        assert self.cookie("sessionid")

    def connect(self, device_id: int, endpoint_id: int) -> tuple[int, str]:
        """The Connect button: (operation id, launch token)."""
        status, headers, page = self.request(f"/devices/{device_id}/remote-access/{endpoint_id}/connect/",
                                             {"csrfmiddlewaretoken": self.cookie("csrftoken")})
        assert status == 302, f"Connect answered {status}:\n{page[-2000:]}"
        location = urllib.parse.urlsplit(headers["Location"])
        match = re.fullmatch(r"/sessions/(\d+)/", location.path)
        assert match, headers["Location"]
        return int(match.group(1)), urllib.parse.parse_qs(location.query)["launch"][0]


class Terminal:
    """The terminal page's WebSocket, as terminal.js uses it."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.screen = b""
        self.statuses: list[dict] = []

    def _take(self, timeout: float) -> None:
        frame = self.ws.recv(timeout=timeout)
        if isinstance(frame, bytes):
            self.screen += frame
        else:
            message = json.loads(frame)
            if message["type"] == "status":
                self.statuses.append(message)

    def _until(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} within {timeout} s; statuses {self.statuses}, "
                                   f"screen {self.screen[-500:]!r}")
            self._take(remaining)

    def wait_for_state(self, state: str, timeout: float = 20) -> dict:
        self._until(lambda: any(s["state"] == state for s in self.statuses), timeout, f"status {state!r}")
        return next(s for s in self.statuses if s["state"] == state)

    def wait_for_output(self, pattern: bytes, timeout: float = 15) -> None:
        start = len(self.screen)
        self._until(lambda: re.search(pattern, self.screen[start:]), timeout, repr(pattern))


@pytest.fixture(scope="module")
def cluster():
    """PostgreSQL with the schema, redis-server, sshd and two workers."""
    with postgres_server() as database_url, redis_server() as redis_url, Sshd() as sshd:
        env = server_env(DATABASE_URL=database_url, REDIS_URL=redis_url)
        migrated = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)
        assert migrated.returncode == 0, f"migrate failed:\n{migrated.stdout}\n{migrated.stderr}"
        workers = [Gateway(DATABASE_URL=database_url, REDIS_URL=redis_url),
                   Gateway(DATABASE_URL=database_url, REDIS_URL=redis_url)]
        try:
            for worker in workers:
                worker.start()
            yield {"env": env, "a": workers[0], "b": workers[1], "sshd": sshd}
        finally:
            for worker in workers:
                worker.stop()
            for name, worker in zip("AB", workers):
                if worker.output is not None:
                    print(f"--- worker {name} on {worker.port}")
                    print("\n".join(worker.output.lines))


def test_a_terminal_page_on_one_worker_reaches_a_device_on_another_through_postgres_and_redis(cluster, tmp_path):
    env, worker_a, worker_b, sshd = cluster["env"], cluster["a"], cluster["b"], cluster["sshd"]
    config = tmp_path / "agent.toml"
    world = manage_shell(env, SETUP, {
        "username": USERNAME, "password": PASSWORD, "server": worker_b.url, "config": str(config),
        "sshd": {"host": sshd.host, "port": sshd.port, "user": sshd.user, "password": sshd.password},
    })
    assert world["database"] == "postgresql"

    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)], cwd=ROOT,
                             env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    agent_log = LineReader(agent.stdout)
    try:
        agent_log.wait_for("control channel connected", timeout=20)

        browser = Browser(worker_a.url)
        browser.log_in(USERNAME, PASSWORD)
        operation_id, launch = browser.connect(world["device"], world["endpoint"])
        with open_session_page(worker_a, operation_id, f"launch={launch}&cols=80&rows=24",
                               browser.cookie("sessionid")) as ws:
            page = Terminal(ws)
            page.wait_for_state("connected")
            ws.send(b"echo $((6*7))\r")
            page.wait_for_output(rb"\b42\b")
            ws.send(b"exit\r")
            assert "the remote shell exited" in page.wait_for_state("disconnected")["message"]

        # The page on A, the device's tunnel on B: they met through Redis.
        a_lines, b_lines = worker_a.output.lines, worker_b.output.lines
        assert any(f"/ws/sessions/{operation_id}/" in line for line in a_lines), "the page is on worker A"
        assert not any(f"/ws/sessions/{operation_id}/" in line for line in b_lines)
        assert any("/service/remoteaccess/device/" in line for line in b_lines), "the tunnel is on worker B"
        assert not any("/service/remoteaccess/device/" in line for line in a_lines)

        outcome = manage_shell(env, OUTCOME, {"operation": operation_id, "timeout": 15})
        assert outcome["status"] == "SUCCESSFUL", outcome
        assert outcome["ended"] and outcome["device"] == world["device"]
        assert outcome["bytes_to_device"] > 0 and outcome["bytes_from_device"] > 0
    finally:
        if agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(timeout=10)
        print("--- agent")
        print("\n".join(agent_log.lines))
