"""Revoking an API token on the profile page closes the live passthrough
tunnels opened with it, through the real gateway and agent, also when the
tunnels live on another worker; a tunnel opened with another token stays up."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client
from guardian.shortcuts import assign_perm
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from endpoints.models import Device, Endpoint, Protocol
from portal.models import ApiToken
from sessions.models import Operation
from tests.live import Agent, EchoServer, Gateway, live_database, printed_log, redis_server, wait_until


@contextmanager
def gateways(setup: str) -> Iterator[tuple[Gateway, Gateway]]:
    """(the client's worker, the worker that revokes and holds the device)."""
    if setup != "two workers":
        gateway = Gateway(ASGI_SERVER=setup).start()
        try:
            yield gateway, gateway
        finally:
            gateway.stop()
        return
    with redis_server() as url:
        first = Gateway(REDIS_URL=url, ASGI_SERVER="uvicorn").start()
        second = Gateway(REDIS_URL=url, ASGI_SERVER="uvicorn").start()
        try:
            yield first, second
        finally:
            first.stop()
            second.stop()


@pytest.fixture(scope="module", params=["daphne", "uvicorn", "two workers"])
def world(request, django_db_setup, django_db_blocker, tmp_path_factory):
    with live_database(django_db_blocker), gateways(request.param) as (gateway, revoker):
        echo = EchoServer()
        device = Device.objects.create(serial="gw-revoke", name="Revocation gateway")
        user = User.objects.create_user("tech", password="tech-pass-1")
        assign_perm("remote_access_read", user, device)
        endpoint = Endpoint.objects.create(device=device, name="Echo", protocol=Protocol.PASSTHROUGH,
                                           hostname="127.0.0.1", port=echo.port)
        agent = Agent(tmp_path_factory.mktemp("agent"), revoker.url, device).start()
        try:
            agent.wait_online()
            # daphne sends no close reason (only the code); uvicorn sends both.
            yield {"gateway": gateway, "revoker": revoker, "device": device, "user": user, "endpoint": endpoint,
                   "close_reason": "" if request.param == "daphne" else "API token revoked"}
        finally:
            agent.stop()
            echo.stop()


def tunnel(world: dict, headers: dict | None = None, query: str = ""):
    """A local proxy's tunnel to the echo target, proven to carry bytes."""
    gateway, device, endpoint = world["gateway"], world["device"], world["endpoint"]
    url = f"{gateway.ws_url}/service/remoteaccess/client/{device.pk}/configurations/{endpoint.pk}{query}"
    ws = connect(url, additional_headers=headers or {}, open_timeout=10).__enter__()
    ws.send(b"ping")
    assert ws.recv(timeout=20) == b"ping"
    return ws


def revoke_on_the_profile_page(world: dict, record: ApiToken) -> str:
    """As the user does it, on the gateway (the other worker, if two): the page's message."""
    client = Client()
    client.force_login(world["user"])
    browser = requests.Session()
    browser.cookies.set("sessionid", client.cookies["sessionid"].value)
    profile = f"{world['revoker'].url}/accounts/profile/"
    browser.get(profile, timeout=10).raise_for_status()
    response = browser.post(f"{profile}tokens/{record.pk}/revoke/", timeout=20,
                            data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]}, headers={"Referer": profile})
    response.raise_for_status()
    return response.text


def test_revoking_a_token_closes_its_tunnels_at_once(world):
    record, token = ApiToken.issue(world["user"], "laptop")
    _, other = ApiToken.issue(world["user"], "ci")
    with printed_log(*{world["gateway"], world["revoker"]}):
        revoked = [tunnel(world, headers={"Authorization": f"Bearer {token}"}), tunnel(world, query=f"?token={token}")]
        kept = tunnel(world, headers={"Authorization": f"Bearer {other}"})
        page = revoke_on_the_profile_page(world, record)
        assert "Token “laptop” revoked. 2 session(s) ended." in page
        for ws in revoked:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, world["close_reason"])
        kept.send(b"still")
        assert kept.recv(timeout=10) == b"still"
        kept.close()
    first_two = Operation.objects.filter(endpoint_name="Echo").order_by("pk")[:2]
    wait_until(lambda: all(op.end_reason for op in first_two.all()), 10, "the revoked sessions' end")
    assert [op.end_reason for op in first_two.all()] == ["API token revoked"] * 2
