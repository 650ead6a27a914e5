"""The device's control channel (`/service/remoteaccess/agent`), driven
in-process: who may open it, what it does to the device's online state, and
how SmartREST lines from the device move connect operations (or are answered
with `ERR` and change nothing)."""

import pytest
from channels.db import database_sync_to_async

from endpoints.models import Device
from endpoints.revocation import revoke_device_credentials
from portal.models import ApiToken
from sessions.models import Status
from tests.asgi.helpers import (
    AGENT_PATH,
    OPERATOR_PASSWORD,
    accepted,
    basic,
    bearer,
    client_path,
    close,
    close_all,
    closed_with,
    communicator,
    connect_request,
    create_operation,
    device_basic,
    is_refused,
    issue_device_token,
    load_device,
    load_operation,
    make_passthrough_endpoint,
    no_answer,
    operation_when,
    operations_snapshot,
    refusal_status,
    the_one_error,
    tunnel_path,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

CONNECT = "c8y_RemoteAccessConnect"
REFUSED_BY_TARGET = "connection refused by 10.0.0.67:5900"


def status_is(status: Status):
    return lambda operation: operation.status == status


# --- authentication ---------------------------------------------------------

@pytest.mark.parametrize(
    "credentials",
    [
        lambda device, token: device_basic(device, token),
        lambda device, token: device_basic(device, token, tenant="t12345"),
        lambda device, token: bearer(token),
    ],
    ids=["basic device_<serial>:<token>", "basic with a tenant prefix", "bearer token"],
)
async def test_a_device_connects_with_its_credentials_and_is_online_until_it_disconnects(device, token, credentials):
    comm = communicator(AGENT_PATH, [credentials(device, token)])
    assert await accepted(comm) is None
    online = await load_device(device.pk)
    assert online.is_online
    assert online.last_seen is not None
    await close(comm)
    offline = await load_device(device.pk)
    assert not offline.is_online
    assert offline.control_channel == ""
    assert offline.last_seen >= online.last_seen


REFUSED_CREDENTIALS = {
    "a wrong token": lambda device, token: [device_basic(device, "not-the-token")],
    "an unknown serial": lambda device, token: [basic("device_gw-9999", token)],
    "the serial without the device_ prefix": lambda device, token: [basic(device.serial, token)],
    "a user's password": lambda device, token: [basic("operator", OPERATOR_PASSWORD)],
    "a user's password under the device's name": lambda device, token: [device_basic(device, OPERATOR_PASSWORD)],
    "a wrong bearer token": lambda device, token: [bearer("not-the-token")],
    "an empty bearer token": lambda device, token: [(b"authorization", b"Bearer ")],
    "basic credentials that are not base64": lambda device, token: [(b"authorization", b"Basic !!not*base64")],
    "an unknown scheme": lambda device, token: [(b"authorization", f"Token {token}".encode())],
    "no authorization header": lambda device, token: [],
}


@pytest.mark.parametrize("credentials", REFUSED_CREDENTIALS.values(), ids=REFUSED_CREDENTIALS.keys())
async def test_it_refuses_a_control_channel_with(device, token, operator, credentials):
    comm = communicator(AGENT_PATH, credentials(device, token))
    assert await is_refused(comm)
    await close(comm)
    assert not (await load_device(device.pk)).is_online


async def test_it_refuses_a_users_api_token_as_device_credentials(device, token, operator):
    _, api_token = await database_sync_to_async(ApiToken.issue)(operator, "cli")
    comm = communicator(AGENT_PATH, [bearer(api_token)])
    assert await is_refused(comm)
    await close(comm)


async def test_a_device_that_never_registered_cannot_connect_with_an_empty_token(device):
    comm = communicator(AGENT_PATH, [device_basic(device, "")])
    assert await is_refused(comm)
    await close(comm)
    assert not (await load_device(device.pk)).is_online


async def test_a_refused_control_channel_is_answered_with_401_where_the_server_can(device, token):
    comm = communicator(AGENT_PATH, [device_basic(device, "not-the-token")])
    assert await refusal_status(comm) == 401
    await close(comm)


async def test_the_control_channel_does_not_check_the_origin(device, token):
    comm = communicator(AGENT_PATH, [device_basic(device, token), (b"origin", b"http://evil.example")])
    await accepted(comm)
    await close(comm)


# --- one control channel per device ------------------------------------------

async def test_a_second_control_channel_replaces_the_first(device, token, operator, proxy):
    first = communicator(AGENT_PATH, [device_basic(device, token)])
    await accepted(first)
    second = communicator(AGENT_PATH, [device_basic(device, token)])
    await accepted(second)
    code, _ = await closed_with(first)
    assert code == 4409
    await close(first)
    assert (await load_device(device.pk)).is_online

    client = communicator(client_path(device.pk, proxy.pk), [basic("operator", OPERATOR_PASSWORD)])
    await accepted(client)
    request = await connect_request(second)
    assert request.serial == device.serial
    await close_all(client, second)
    assert not (await load_device(device.pk)).is_online


async def test_a_connect_waiting_for_its_tunnel_is_sent_again_when_the_device_reconnects(
    device, token, operator, proxy
):
    first = communicator(AGENT_PATH, [device_basic(device, token)])
    await accepted(first)
    client = communicator(client_path(device.pk, proxy.pk), [basic("operator", OPERATOR_PASSWORD)])
    await accepted(client)
    request = await connect_request(first)
    await close(first)
    assert not (await load_device(device.pk)).is_online

    second = communicator(AGENT_PATH, [device_basic(device, token)])
    await accepted(second)
    again = await connect_request(second)
    assert again.line == request.line

    tunnel = communicator(tunnel_path(again.key), [device_basic(device, token)])
    await accepted(tunnel)
    await client.send_to(bytes_data=b"hello")
    assert await tunnel.receive_from(timeout=2) == b"hello"

    # A session whose tunnel is up is not asked for again.
    await close(second)
    third = communicator(AGENT_PATH, [device_basic(device, token)])
    await accepted(third)
    assert await third.receive_nothing(timeout=0.3)
    await close_all(client, tunnel, third)


async def test_a_replacing_control_channel_gets_the_waiting_connects_again(device, token, operator, proxy):
    first = communicator(AGENT_PATH, [device_basic(device, token)])
    await accepted(first)
    client = communicator(client_path(device.pk, proxy.pk), [basic("operator", OPERATOR_PASSWORD)])
    await accepted(client)
    request = await connect_request(first)

    second = communicator(AGENT_PATH, [device_basic(device, token)])
    await accepted(second)
    assert (await closed_with(first))[0] == 4409
    assert (await connect_request(second)).line == request.line
    await close_all(first, client, second)


# --- SmartREST by fragment ---------------------------------------------------

async def test_501_moves_the_oldest_pending_connect_to_executing(control, device, operator, proxy):
    older, _ = await create_operation(proxy, operator)
    newer, _ = await create_operation(proxy, operator)

    await control.send_to(text_data=f"501,{CONNECT}")
    await operation_when(older, status_is(Status.EXECUTING))
    await no_answer(control)
    assert (await load_operation(newer)).status == Status.PENDING

    await control.send_to(text_data=f"501,{CONNECT}")
    await operation_when(newer, status_is(Status.EXECUTING))
    await no_answer(control)


async def test_503_moves_the_oldest_executing_connect_to_successful(control, device, operator, proxy):
    older, _ = await create_operation(proxy, operator)
    newer, _ = await create_operation(proxy, operator)
    await control.send_to(text_data=f"501,{CONNECT}")
    await control.send_to(text_data=f"501,{CONNECT}")
    await operation_when(newer, status_is(Status.EXECUTING))

    await control.send_to(text_data=f"503,{CONNECT}")
    done = await operation_when(older, status_is(Status.SUCCESSFUL))
    await no_answer(control)
    assert done.failure_reason == ""
    assert (await load_operation(newer)).status == Status.EXECUTING


async def test_502_fails_the_oldest_executing_connect_with_exactly_the_quoted_reason(
    control, device, operator, proxy
):
    older, _ = await create_operation(proxy, operator)
    newer, _ = await create_operation(proxy, operator)
    await control.send_to(text_data=f"501,{CONNECT}")
    await operation_when(older, status_is(Status.EXECUTING))

    reason = 'connection refused by 10.0.0.67:5900, "port closed"'
    await control.send_to(text_data=f'502,{CONNECT},"connection refused by 10.0.0.67:5900, ""port closed"""')
    failed = await operation_when(older, status_is(Status.FAILED))
    await no_answer(control)
    assert failed.failure_reason == reason
    assert failed.ended is not None
    assert (await load_operation(newer)).status == Status.PENDING


async def test_502_fails_the_oldest_executing_connect_rather_than_an_older_pending_one(
    control, device, operator, proxy
):
    pending, _ = await create_operation(proxy, operator)
    executing, _ = await create_operation(proxy, operator)
    await control.send_to(text_data=f"504,{executing}")
    await operation_when(executing, status_is(Status.EXECUTING))

    await control.send_to(text_data=f'502,{CONNECT},"{REFUSED_BY_TARGET}"')
    await no_answer(control)
    assert (await load_operation(executing)).status == Status.FAILED
    assert (await load_operation(pending)).status == Status.PENDING


# --- SmartREST by operation id -----------------------------------------------

async def test_504_and_506_move_a_connect_by_its_operation_id(control, device, operator, proxy):
    first, _ = await create_operation(proxy, operator)
    second, _ = await create_operation(proxy, operator)

    await control.send_to(text_data=f"504,{second}")
    await operation_when(second, status_is(Status.EXECUTING))
    await no_answer(control)
    await control.send_to(text_data=f"506,{second}")
    await operation_when(second, status_is(Status.SUCCESSFUL))
    await no_answer(control)
    assert (await load_operation(first)).status == Status.PENDING


@pytest.mark.parametrize("executing_first", [False, True], ids=["from PENDING", "from EXECUTING"])
async def test_505_fails_a_connect_by_its_operation_id_with_its_reason(
    control, device, operator, proxy, executing_first
):
    other, _ = await create_operation(proxy, operator)
    operation, _ = await create_operation(proxy, operator)
    if executing_first:
        await control.send_to(text_data=f"504,{operation}")
        await operation_when(operation, status_is(Status.EXECUTING))

    await control.send_to(text_data=f'505,{operation},"{REFUSED_BY_TARGET}"')
    failed = await operation_when(operation, status_is(Status.FAILED))
    await no_answer(control)
    assert failed.failure_reason == REFUSED_BY_TARGET
    assert failed.ended is not None
    assert (await load_operation(other)).status == Status.PENDING


async def test_505_without_a_reason_records_that_the_device_reported_a_failure(control, device, operator, proxy):
    operation, _ = await create_operation(proxy, operator)
    await control.send_to(text_data=f"505,{operation}")
    failed = await operation_when(operation, status_is(Status.FAILED))
    assert failed.failure_reason == "the device reported a failure"
    await no_answer(control)


@pytest.mark.parametrize(
    "before, after",
    [
        ([], "506,{id}"),
        (["504,{id}"], "506,{id}"),
        ([f"501,{CONNECT}"], f"503,{CONNECT}"),
    ],
    ids=["506 without 504", "504 then 506", "501 then 503"],
)
async def test_a_success_report_for_a_connect_whose_tunnel_is_up_is_accepted_and_changes_nothing(
    control, device, token, operator, proxy, before, after
):
    client = communicator(client_path(device.pk, proxy.pk), [basic("operator", OPERATOR_PASSWORD)])
    await accepted(client)
    request = await connect_request(control)
    for line in before:
        await control.send_to(text_data=line.format(id=request.operation_id))
    if before:
        await operation_when(request.operation_id, status_is(Status.EXECUTING))
    tunnel = communicator(tunnel_path(request.key), [device_basic(device, token)])
    await accepted(tunnel)
    up = await operation_when(request.operation_id, status_is(Status.SUCCESSFUL))

    await control.send_to(text_data=after.format(id=request.operation_id))
    await no_answer(control)
    now = await load_operation(request.operation_id)
    assert (now.status, now.failure_reason, now.tunnel_connected_at, now.ended) == (
        Status.SUCCESSFUL, "", up.tunnel_connected_at, None
    )
    await client.send_to(bytes_data=b"still relaying")
    assert await tunnel.receive_from(timeout=2) == b"still relaying"
    await close_all(client, tunnel)


@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["LF", "CRLF"])
async def test_a_line_with_a_line_ending_is_accepted(control, device, operator, proxy, ending):
    operation, _ = await create_operation(proxy, operator)
    await control.send_to(text_data=f"504,{operation}{ending}")
    await operation_when(operation, status_is(Status.EXECUTING))
    await no_answer(control)


async def test_a_line_of_exactly_8_kib_is_accepted(control, device, operator, proxy):
    operation, _ = await create_operation(proxy, operator)
    start = f'505,{operation},"'
    line = start + "x" * (8 * 1024 - len(start) - 1) + '"'
    assert len(line.encode()) == 8 * 1024
    await control.send_to(text_data=line)
    failed = await operation_when(operation, status_is(Status.FAILED))
    assert failed.failure_reason.startswith("xxx")
    await no_answer(control)


# --- bad input ---------------------------------------------------------------

BAD_FRAMES = {
    "garbage": {"text": "garbage"},
    "whitespace only": {"text": "   "},
    "an empty text frame": {"text": ""},
    "unbalanced quotes": {"text": '505,{pending},"connection refused'},
    "text after a closing quote": {"text": '505,{pending},"refused"by host'},
    "501 without its fragment": {"text": "501"},
    "501 with an extra field": {"text": f"501,{CONNECT},extra"},
    "503 with an extra field": {"text": f"503,{CONNECT},extra"},
    "502 with two reasons": {"text": f'502,{CONNECT},"a","b"'},
    "504 without an id": {"text": "504"},
    "504 with two ids": {"text": "504,{pending},{pending}"},
    "505 with two reasons": {"text": '505,{pending},"a","b"'},
    "an unknown message code": {"text": f"599,{CONNECT}"},
    "a connect request sent back": {"text": "530,gw-0001,10.0.0.67,5900,somekey,{pending}"},
    "an unknown fragment": {"text": "501,c8y_Restart"},
    "an unknown operation id": {"text": "504,999999"},
    "a non-numeric operation id": {"text": "504,abc"},
    "a negative operation id": {"text": "504,-{pending}"},
    "an empty operation id": {"text": "504,"},
    "a huge operation id": {"text": "504," + "9" * 40},
    "another device's operation (504)": {"text": "504,{other}"},
    "another device's operation (505)": {"text": '505,{other},"nope"'},
    "506 on a PENDING operation": {"text": "506,{pending}"},
    "504 on a FAILED operation": {"text": "504,{failed}"},
    "506 on a FAILED operation": {"text": "506,{failed}"},
    "505 on a FAILED operation": {"text": '505,{failed},"again"'},
    "503 with nothing executing": {"text": f"503,{CONNECT}"},
    "a line over 8 KiB": {"text": '505,{pending},"' + "x" * (8 * 1024) + '"'},
    "a binary frame": {"bytes": b"504,1"},
}


@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_a_bad_line_gets_one_err_and_changes_nothing(control, device, other_device, operator, proxy, frame):
    other_token = await database_sync_to_async(issue_device_token)(other_device)
    other_control = communicator(AGENT_PATH, [device_basic(other_device, other_token)])
    await accepted(other_control)
    other_proxy = await database_sync_to_async(make_passthrough_endpoint)(other_device)
    other, _ = await create_operation(other_proxy, operator)
    failed, _ = await create_operation(proxy, operator)
    await control.send_to(text_data=f'505,{failed},"{REFUSED_BY_TARGET}"')
    await operation_when(failed, status_is(Status.FAILED))
    pending, _ = await create_operation(proxy, operator)
    before = await operations_snapshot()

    if "text" in frame:
        frame = {"text": frame["text"].format(pending=pending, failed=failed, other=other)}
    await control.send_input({"type": "websocket.receive", **frame})
    reason = await the_one_error(control)
    assert reason
    assert await operations_snapshot() == before

    # The channel is still up and still works.
    assert (await load_device(device.pk)).is_online
    await control.send_to(text_data=f"504,{pending}")
    await operation_when(pending, status_is(Status.EXECUTING))
    await close(other_control)


async def test_a_refused_line_says_why(control, device, operator, proxy):
    await control.send_to(text_data="504,424242")
    assert "unknown operation" in await the_one_error(control)
    await control.send_to(text_data="x" * (9 * 1024))
    assert "8192" in await the_one_error(control)
    await control.send_input({"type": "websocket.receive", "bytes": b"\x00\x01"})
    assert "binary" in await the_one_error(control)


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0c", "\x1e"], ids=["U+2028", "NEL", "FF", "RS"])
async def test_a_quoted_reason_with_a_unicode_line_break_is_still_one_line(
    control, device, operator, proxy, separator
):
    operation, _ = await create_operation(proxy, operator)
    await control.send_to(text_data=f'505,{operation},"refused{separator}by 10.0.0.67"')
    failed = await operation_when(operation, status_is(Status.FAILED))
    await no_answer(control)
    assert failed.failure_reason == f"refused{separator}by 10.0.0.67"


async def test_revoking_the_credentials_closes_the_live_control_channel_at_once(control, device, token):
    await database_sync_to_async(lambda: revoke_device_credentials(Device.objects.get(pk=device.pk)))()
    closed = await control.receive_output(timeout=2)
    assert closed == {"type": "websocket.close", "code": 4401}
    again = communicator(AGENT_PATH, [device_basic(device, token)])
    assert await is_refused(again)
