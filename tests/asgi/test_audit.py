"""The audit trail: every refused attempt of a known user leaves a record with
its reason, an unknown client's is logged, no session runs without its
record, and no record goes when what it names is deleted."""

import logging

import pytest
from channels.db import database_sync_to_async
from django.db import DatabaseError
from django.test import Client

from endpoints.models import Device, Endpoint
from portal.models import ApiToken
from sessions import operations
from sessions.models import Operation, Status
from sessions.refusals import REFUSED
from tests.asgi.helpers import (
    basic,
    client_path,
    close,
    closed_with,
    communicator,
    is_refused,
    make_passthrough_endpoint,
    open_client,
)
from tests.asgi.test_passthrough_client import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "127.0.0.9"
SITE = (b"origin", b"http://127.0.0.1:8000")


def from_address(comm):
    comm.scope["client"] = [ADDRESS, 50000]
    return comm


@database_sync_to_async
def records() -> list[Operation]:
    return list(Operation.objects.order_by("pk"))


@database_sync_to_async
def passthrough_of(device: Device) -> Endpoint:
    return make_passthrough_endpoint(device, "Other proxy")


@pytest.mark.asyncio
@pytest.mark.parametrize("who, where, reason", [
    ("outsider", "proxy", "no access to the device"),
    ("operator", "ssh", "not a passthrough endpoint"),
    ("operator", "other proxy", "the endpoint is not on device {device}"),
])
async def test_a_refused_passthrough_client_leaves_a_record_with_its_reason(
    control, device, other_device, operator, outsider, proxy, ssh_endpoint, who, where, reason
):
    endpoints = {"proxy": proxy, "ssh": ssh_endpoint, "other proxy": await passthrough_of(other_device)}
    endpoint = endpoints[where]
    password = {"operator": "operator-pass-1", "outsider": "outsider-pass-1"}[who]
    comm = from_address(communicator(client_path(device.pk, endpoint.pk), [basic(who, password)]))
    assert await is_refused(comm)
    await close(comm)
    [record] = await records()
    assert record.status == Status.FAILED and record.failure_reason == REFUSED + reason.format(device=device.pk)
    assert (record.username, record.endpoint_id, record.endpoint_name, record.device_serial) == (
        who, endpoint.pk, endpoint.name, (other_device if where == "other proxy" else device).serial)
    assert record.client_address == ADDRESS and record.ended is not None
    assert await control.receive_nothing(timeout=0.2), "the device was asked for a tunnel"


@pytest.mark.asyncio
async def test_an_unknown_client_is_logged_not_recorded(control, device, operator, proxy, caplog):
    comm = from_address(communicator(client_path(device.pk, proxy.pk), [basic("operator", "wrong-password")]))
    with caplog.at_level(logging.WARNING, "sessions.consumers"):
        assert await is_refused(comm)
    await close(comm)
    assert await records() == []
    assert f"no valid credentials for endpoint '{proxy.pk}' of device '{device.pk}' from {ADDRESS}" in caplog.text


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["passthrough", "session page"])
async def test_a_foreign_origin_is_logged(device, operator, proxy, caplog, path):
    url = client_path(device.pk, proxy.pk) if path == "passthrough" else "/ws/sessions/1/?launch=x"
    comm = from_address(communicator(url, [await session_cookie(operator), (b"origin", b"http://evil.example")]))
    with caplog.at_level(logging.WARNING, "sessions.websocket_auth"):
        assert await is_refused(comm)
    await close(comm)
    assert f"Origin 'http://evil.example' is not this site (from {ADDRESS})" in caplog.text


@database_sync_to_async
def browser_session(endpoint: Endpoint, user) -> tuple[Operation, str]:
    return operations.start_browser_session(endpoint, user, None)


@pytest.mark.asyncio
async def test_a_refused_session_page_leaves_a_record_with_its_reason(device, operator, outsider, ssh_endpoint):
    operation, launch = await browser_session(ssh_endpoint, operator)
    for user, token in ((operator, "not-the-launch-token"), (outsider, launch)):
        comm = from_address(communicator(f"/ws/sessions/{operation.pk}/?launch={token}",
                                         [await session_cookie(user), SITE]))
        connected, _ = await comm.connect()
        assert connected
        await comm.receive_output()
        assert (await closed_with(comm))[0] == 4403
        await close(comm)
    first, *refusals = await records()
    assert first.pk == operation.pk and first.status == Status.PENDING
    assert [(r.username, r.endpoint_id, r.client_address, r.status) for r in refusals] == [
        ("operator", ssh_endpoint.pk, ADDRESS, Status.FAILED), ("outsider", ssh_endpoint.pk, ADDRESS, Status.FAILED)]
    assert all("already used or has expired" in r.failure_reason for r in refusals)


@pytest.mark.parametrize("who, endpoint, reason", [
    ("outsider", "ssh", "no access to the device"),
    ("operator", "other", "the endpoint is not on device {device}"),
    ("operator", "passthrough", "a passthrough endpoint takes a local proxy"),
])
def test_a_refused_connect_leaves_a_record_with_its_reason(
    device, other_device, operator, outsider, ssh_endpoint, proxy, who, endpoint, reason
):
    endpoints = {"ssh": ssh_endpoint, "passthrough": proxy,
                 "other": Endpoint.objects.create(device=other_device, name="Other", protocol="SSH",
                                                  hostname="10.0.0.1", port=22)}
    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login({"operator": operator, "outsider": outsider}[who])
    response = client.post(f"/devices/{device.pk}/remote-access/{endpoints[endpoint].pk}/connect/")
    assert response.status_code in (302, 404)
    [record] = Operation.objects.all()
    assert (record.username, record.endpoint_id, record.client_address, record.status) == (
        who, endpoints[endpoint].pk, ADDRESS, Status.FAILED)
    assert record.failure_reason == REFUSED + reason.format(device=device.pk)


def test_a_connect_to_no_endpoint_at_all_is_logged(device, operator, caplog):
    client = Client(REMOTE_ADDR=ADDRESS)
    client.force_login(operator)
    with caplog.at_level(logging.WARNING, "sessions.refusals"):
        assert client.post(f"/devices/{device.pk}/remote-access/999999/connect/").status_code == 404
    assert not Operation.objects.exists()
    assert f"operator from {ADDRESS} refused: no endpoint '999999'" in caplog.text


def failing(*args, **kwargs):
    raise DatabaseError("disk I/O error")


@pytest.mark.asyncio
async def test_a_passthrough_session_whose_record_cannot_be_written_is_refused(
    control, device, operator, proxy, monkeypatch
):
    monkeypatch.setattr(operations, "create", failing)
    client = await open_client(device, proxy)
    assert await closed_with(client) == (1011, "the session could not be recorded")
    await close(client)
    assert await control.receive_nothing(timeout=0.2), "the device was asked for a tunnel"
    assert await records() == []


@pytest.mark.asyncio
async def test_a_browser_session_whose_record_cannot_be_armed_is_refused(
    control, device, operator, ssh_endpoint, monkeypatch
):
    operation, launch = await browser_session(ssh_endpoint, operator)
    monkeypatch.setattr(operations, "arm", failing)
    comm = communicator(f"/ws/sessions/{operation.pk}/?launch={launch}", [await session_cookie(operator), SITE])
    connected, _ = await comm.connect()
    assert connected
    messages = []
    while (message := await comm.receive_output())["type"] != "websocket.close":
        messages.append(message.get("text"))
    assert '"message": "the session could not be recorded"' in messages[-1]
    await close(comm)
    assert await control.receive_nothing(timeout=0.2), "the device was asked for a tunnel"


def test_records_stay_when_their_endpoint_device_user_and_api_token_are_deleted(device, operator, ssh_endpoint):
    operation = Operation.for_endpoint(ssh_endpoint, operator, ADDRESS)
    operation.api_token = ApiToken.issue(operator, "cli")[0]
    operation.save()
    snapshot = ("PLC shell", "SSH", "10.0.0.5", 22, "gw-0001", "operator", ADDRESS)
    ssh_endpoint.delete()
    device.delete()
    operator.delete()
    kept = Operation.objects.get(pk=operation.pk)
    assert (kept.endpoint_id, kept.device_id, kept.user_id, kept.api_token_id) == (None, None, None, None)
    assert (kept.endpoint_name, kept.protocol, kept.hostname, kept.port, kept.device_serial, kept.username,
            kept.client_address) == snapshot
