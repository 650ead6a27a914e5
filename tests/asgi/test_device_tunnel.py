"""The device's tunnel (`/service/remoteaccess/device/<connectionKey>`), driven
in-process: which tunnels are let in, what the operation records, and the
bytes between the tunnel and a passthrough client."""

import asyncio

import pytest
import pytest_asyncio

from sessions.models import Status
from tests.asgi.helpers import (
    QUIET,
    accepted,
    bearer,
    close,
    close_all,
    closed_with,
    communicator,
    connect_request,
    create_operation,
    device_basic,
    frames_until_close,
    is_refused,
    load_operation,
    open_client,
    operation_when,
    receive_bytes,
    refusal_status,
    tunnel_path,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

REFUSED_BY_TARGET = "connection refused by 10.0.0.67:5900"


@pytest_asyncio.fixture
async def waiting(control, device, operator, proxy):
    """A passthrough client waiting for its tunnel, and the connect request
    the device received for it."""
    client = await open_client(device, proxy)
    request = await connect_request(control)
    yield client, request
    await close(client)


def tunnel(device, token, key: str, subprotocols: list[str] | None = None):
    return communicator(tunnel_path(key), [device_basic(device, token)], subprotocols)


# --- who gets in ---------------------------------------------------------------

@pytest.mark.parametrize(
    "subprotocols, chosen",
    [(None, None), (["binary"], "binary"), (["binary", "base64"], "binary"), (["base64"], None)],
    ids=["none asked", "binary asked", "binary among others", "only another one asked"],
)
async def test_a_tunnel_with_its_key_and_the_devices_credentials_is_accepted(
    waiting, device, token, subprotocols, chosen
):
    client, request = waiting
    comm = tunnel(device, token, request.key, subprotocols)
    assert await accepted(comm) == chosen
    operation = await load_operation(request.operation_id)
    assert operation.status == Status.SUCCESSFUL
    assert operation.tunnel_connected_at is not None
    assert (operation.failure_reason, operation.ended) == ("", None)
    await close(comm)


@pytest.mark.parametrize(
    "credentials",
    [lambda device, token: device_basic(device, token, tenant="t12345"), lambda device, token: bearer(token)],
    ids=["basic with a tenant prefix", "bearer token"],
)
async def test_a_tunnel_takes_every_form_of_device_credentials(waiting, device, token, credentials):
    _, request = waiting
    comm = communicator(tunnel_path(request.key), [credentials(device, token)])
    await accepted(comm)
    await close(comm)


@pytest.mark.parametrize(
    "credentials",
    [
        lambda device, token, other_device, other_token: [device_basic(device, "not-the-token")],
        lambda device, token, other_device, other_token: [device_basic(other_device, other_token)],
        lambda device, token, other_device, other_token: [bearer(other_token)],
        lambda device, token, other_device, other_token: [],
    ],
    ids=["wrong device credentials", "another device's credentials", "another device's bearer token",
         "no credentials"],
)
async def test_it_refuses_a_tunnel_with_the_right_key_but(
    waiting, device, token, other_device, other_token, credentials
):
    _, request = waiting
    comm = communicator(tunnel_path(request.key), credentials(device, token, other_device, other_token))
    assert await is_refused(comm)
    await close(comm)
    operation = await load_operation(request.operation_id)
    assert operation.status == Status.PENDING
    assert operation.tunnel_connected_at is None

    # The key is not spent by a refused attempt: the device itself still gets in.
    right = tunnel(device, token, request.key)
    await accepted(right)
    await close(right)


async def test_it_refuses_a_used_connection_key(waiting, device, token):
    client, request = waiting
    first = tunnel(device, token, request.key)
    await accepted(first)
    second = tunnel(device, token, request.key)
    assert await is_refused(second)
    await close(second)

    await client.send_to(bytes_data=b"to the first tunnel")
    assert await first.receive_from(timeout=2) == b"to the first tunnel"
    await close(first)
    await closed_with(client)

    third = tunnel(device, token, request.key)
    assert await is_refused(third)
    await close(third)


async def test_it_refuses_an_expired_connection_key(control, device, token, operator, proxy, settings):
    settings.REMOTE_ACCESS_CONNECTION_KEY_TTL = 1
    operation_id, key = await create_operation(proxy, operator)
    await asyncio.sleep(1.1)
    comm = tunnel(device, token, key)
    assert await is_refused(comm)
    await close(comm)
    assert (await load_operation(operation_id)).tunnel_connected_at is None


async def test_it_refuses_an_unknown_connection_key(control, device, token):
    comm = tunnel(device, token, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert await is_refused(comm)
    await close(comm)


async def test_it_refuses_the_key_of_a_failed_operation(waiting, control, device, token):
    client, request = waiting
    await control.send_to(text_data=f'505,{request.operation_id},"{REFUSED_BY_TARGET}"')
    assert (await closed_with(client))[0] == 4003
    comm = tunnel(device, token, request.key)
    assert await is_refused(comm)
    await close(comm)
    operation = await load_operation(request.operation_id)
    assert (operation.status, operation.tunnel_connected_at) == (Status.FAILED, None)


async def test_a_refused_tunnel_is_answered_401_or_403_where_the_server_can(waiting, device, token):
    _, request = waiting
    bad_credentials = communicator(tunnel_path(request.key), [device_basic(device, "not-the-token")])
    assert await refusal_status(bad_credentials) == 401
    await close(bad_credentials)
    unknown_key = tunnel(device, token, "not-a-key")
    assert await refusal_status(unknown_key) == 403
    await close(unknown_key)


async def test_the_tunnel_does_not_check_the_origin(waiting, device, token):
    _, request = waiting
    comm = communicator(tunnel_path(request.key), [device_basic(device, token), (b"origin", b"http://evil.example")])
    await accepted(comm)
    await close(comm)


async def test_a_tunnel_is_accepted_when_the_success_report_arrived_first(waiting, control, device, token):
    client, request = waiting
    await control.send_to(text_data=f"504,{request.operation_id}")
    await control.send_to(text_data=f"506,{request.operation_id}")
    await operation_when(request.operation_id, lambda operation: operation.status == Status.SUCCESSFUL)
    comm = tunnel(device, token, request.key)
    connected, _ = await comm.connect(timeout=2)
    assert connected
    await client.send_to(bytes_data=b"ping")
    assert await comm.receive_from(timeout=2) == b"ping"
    await close(comm)


# --- the session -------------------------------------------------------------

async def test_bytes_go_both_ways_between_the_tunnel_and_the_client(waiting, device, token):
    client, request = waiting
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    for n in range(3):
        await client.send_to(bytes_data=b"\x00ssh-%d\xff" % n)
        assert await comm.receive_from(timeout=2) == b"\x00ssh-%d\xff" % n
        await comm.send_to(bytes_data=b"\x01reply-%d\xfe" % n)
        assert await client.receive_from(timeout=2) == b"\x01reply-%d\xfe" % n
    await close_all(comm, client)


async def test_large_payloads_arrive_whole_in_frames_of_at_most_64_kib(waiting, device, token):
    client, request = waiting
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    upload = bytes(range(256)) * 1000
    await client.send_to(bytes_data=upload)
    frames = await receive_bytes(comm, len(upload))
    assert b"".join(frames) == upload
    assert max(map(len, frames)) <= 64 * 1024

    download = bytes(reversed(range(256))) * 900
    await comm.send_to(bytes_data=download)
    assert b"".join(await receive_bytes(client, len(download))) == download
    await close_all(comm, client)


async def test_what_the_client_sent_before_the_join_reaches_the_tunnel_in_frames_of_at_most_64_kib(
    waiting, device, token
):
    client, request = waiting
    upload = bytes(range(256)) * 800
    await client.send_to(bytes_data=upload)
    await asyncio.sleep(QUIET)
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    frames = await receive_bytes(comm, len(upload))
    assert b"".join(frames) == upload
    assert max(map(len, frames)) <= 64 * 1024
    await close_all(comm, client)


@pytest.mark.parametrize("reported", [True, False], ids=["after a success report", "without a success report"])
async def test_a_text_frame_from_the_device_ends_the_session_and_is_not_forwarded(
    waiting, control, device, token, reported
):
    client, request = waiting
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    if reported:
        await control.send_to(text_data=f"506,{request.operation_id}")
    await client.send_to(bytes_data=b"12345")
    assert await comm.receive_from(timeout=2) == b"12345"
    await comm.send_to(bytes_data=b"abc")
    assert await client.receive_from(timeout=2) == b"abc"

    await comm.send_to(text_data="## Shutdown ##")
    frames, _ = await frames_until_close(client, timeout=3)
    assert frames == []
    assert (await frames_until_close(comm))[0] == []
    await close_all(comm, client)

    operation = await operation_when(
        request.operation_id, lambda operation: operation.bytes_to_device and operation.bytes_from_device
    )
    assert (operation.bytes_to_device, operation.bytes_from_device) == (5, 3)
    assert operation.status == Status.SUCCESSFUL
    assert operation.ended is not None


async def test_the_device_closing_its_tunnel_closes_the_client(waiting, control, device, token):
    client, request = waiting
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    await control.send_to(text_data=f"506,{request.operation_id}")
    await close(comm)
    await closed_with(client)
    await close(client)
    operation = await operation_when(request.operation_id, lambda operation: operation.ended is not None)
    assert operation.status == Status.SUCCESSFUL


async def test_the_client_closing_closes_the_tunnel(waiting, device, token):
    client, request = waiting
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    await client.send_to(bytes_data=b"bye")
    assert await comm.receive_from(timeout=2) == b"bye"
    await close(client)
    await closed_with(comm)
    await close(comm)
    operation = await operation_when(
        request.operation_id, lambda operation: operation.ended is not None and operation.bytes_to_device == 3
    )
    assert operation.status == Status.SUCCESSFUL


async def test_a_failure_reported_after_the_tunnel_is_up_closes_both_sides(waiting, control, device, token):
    client, request = waiting
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    await control.send_to(text_data=f'505,{request.operation_id},"{REFUSED_BY_TARGET}"')
    code, reason = await closed_with(client)
    assert (code, reason) == (4003, REFUSED_BY_TARGET)
    await closed_with(comm)
    await close_all(comm, client)
    operation = await load_operation(request.operation_id)
    assert (operation.status, operation.failure_reason) == (Status.FAILED, REFUSED_BY_TARGET)
    assert operation.tunnel_connected_at is not None


async def test_a_failure_reported_just_after_the_device_closed_its_tunnel_reaches_the_client(
    waiting, control, device, token
):
    client, request = waiting
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    await close(comm)
    await asyncio.sleep(0.2)
    await control.send_to(text_data=f'505,{request.operation_id},"{REFUSED_BY_TARGET}"')
    assert await closed_with(client, timeout=3) == (4003, REFUSED_BY_TARGET)
    await close(client)
    operation = await load_operation(request.operation_id)
    assert (operation.status, operation.failure_reason) == (Status.FAILED, REFUSED_BY_TARGET)

