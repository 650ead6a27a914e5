"""The ASGI app served by a real server process, as `make run` starts it, on
each ASGI server `manage.py serve` offers."""

import os
import subprocess
import sys
import urllib.request

import pytest

from portal.asgi_servers import SERVERS
from tests.live import ROOT, free_port, stop_process, wait_for_port


@pytest.fixture(scope="module", params=SERVERS)
def server(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    env = {**os.environ, "DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "portal.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port), "--server", request.param],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


def fetch(url: str) -> tuple[int, dict, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def test_the_server_serves_the_login_page(server):
    status, headers, body = fetch(server + "/accounts/login/")
    assert status == 200
    assert b"Log in" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]


def test_the_server_serves_our_static_files_and_the_npm_packages(server):
    if not (ROOT / "node_modules" / "@xterm" / "xterm").is_dir():
        pytest.fail("node_modules is missing: run `make test`, which runs npm ci")
    for path, marker in [
        ("/static/css/portal.css", b".topbar"),
        ("/static/vendor/xterm/lib/xterm.js", b"Terminal"),
        ("/static/vendor/xterm/css/xterm.css", b".xterm"),
        ("/static/vendor/novnc/core/rfb.js", b"RFB"),
    ]:
        status, _, body = fetch(server + path)
        assert status == 200, path
        assert marker in body, path
