"""The passthrough client (`/service/remoteaccess/client/<deviceId>/configurations/<configId>`),
driven in-process as a local proxy (c8ylp, remote-access-client) uses it: who
may open one, and what it sees while the device joins, fails or never comes."""

import asyncio
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from endpoints.models import hash_token
from portal import login_tokens
from portal.models import ApiToken
from sessions.models import Operation, Status
from sessions.refusals import REFUSED
from tests.asgi.helpers import (
    OPERATOR_PASSWORD,
    QUIET,
    accepted,
    basic,
    bearer,
    client_path,
    close,
    close_all,
    closed_with,
    communicator,
    connect_request,
    device_basic,
    is_refused,
    load_operation,
    make_passthrough_endpoint,
    open_client,
    operation_when,
    receive_bytes,
    refusal_status,
    tunnel_path,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

REFUSED_BY_TARGET = "connection refused by 10.0.0.67:5900"


@database_sync_to_async
def operation_count() -> int:
    return Operation.objects.count()


@database_sync_to_async
def sessions_started() -> int:
    """Operations other than the audit records of refused attempts (tests/asgi/test_audit.py)."""
    return Operation.objects.exclude(failure_reason__startswith=REFUSED).count()


@database_sync_to_async
def session_cookie(user: User) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return b"cookie", f"{name}={client.cookies[name].value}".encode()


@database_sync_to_async
def api_token(user: User, revoked: bool = False) -> str:
    record, token = ApiToken.issue(user, "cli")
    if revoked:
        record.delete()
    return token


async def credentials_for(kind: str, user: User) -> list[tuple[bytes, bytes]]:
    if kind == "session cookie":
        return [await session_cookie(user)]
    if kind == "session cookie from the site itself":
        return [await session_cookie(user), (b"origin", b"http://127.0.0.1:8000")]
    if kind == "basic password":
        return [basic(user.username, OPERATOR_PASSWORD)]
    if kind == "basic password with a tenant prefix":
        return [basic(f"t12345/{user.username}", OPERATOR_PASSWORD)]
    if kind == "bearer api token":
        return [bearer(await api_token(user))]
    raise AssertionError(kind)


def tunnel(device, token, key: str):
    return communicator(tunnel_path(key), [device_basic(device, token)])


# --- who may connect -----------------------------------------------------------

@pytest.mark.parametrize(
    "kind",
    ["session cookie", "session cookie from the site itself", "basic password",
     "basic password with a tenant prefix", "bearer api token"],
)
async def test_a_user_with_read_connects_with(control, device, operator, proxy, kind):
    client = await open_client(device, proxy, await credentials_for(kind, operator))
    request = await connect_request(control)
    operation = await load_operation(request.operation_id)
    assert (operation.username, operation.status) == ("operator", Status.PENDING)
    await close(client)


async def test_a_user_with_admin_connects_too(control, device, owner, proxy):
    client = await open_client(device, proxy, [basic("owner", "owner-pass-1")])
    await connect_request(control)
    await close(client)


@database_sync_to_async
def deactivated(user: User) -> User:
    user.is_active = False
    user.save(update_fields=["is_active"])
    return user


REFUSED_CREDENTIALS = {
    "no credentials": lambda user: [],
    "a wrong password": lambda user: [basic(user.username, "not-the-password")],
    "an unknown user": lambda user: [basic("nobody", OPERATOR_PASSWORD)],
    "an unknown bearer token": lambda user: [bearer("rag_not-a-token")],
    "a session cookie that is not a session": lambda user: [(b"cookie", b"sessionid=not-a-session")],
    "the device's own credentials": lambda user: [basic("device_gw-0001", "whatever")],
}


@pytest.mark.parametrize("credentials", REFUSED_CREDENTIALS.values(), ids=REFUSED_CREDENTIALS.keys())
async def test_it_refuses_a_client_with(control, device, operator, proxy, credentials):
    comm = communicator(client_path(device.pk, proxy.pk), credentials(operator))
    assert await is_refused(comm)
    await close(comm)
    assert await operation_count() == 0
    assert await control.receive_nothing(timeout=QUIET)


async def test_it_refuses_a_revoked_api_token(control, device, operator, proxy):
    comm = communicator(client_path(device.pk, proxy.pk), [bearer(await api_token(operator, revoked=True))])
    assert await is_refused(comm)
    await close(comm)
    assert await operation_count() == 0


async def test_it_refuses_an_inactive_users_password_and_api_token(control, device, operator, proxy):
    token = await api_token(operator)
    await deactivated(operator)
    for credentials in ([basic("operator", OPERATOR_PASSWORD)], [bearer(token)]):
        comm = communicator(client_path(device.pk, proxy.pk), credentials)
        assert await is_refused(comm)
        await close(comm)
    assert await operation_count() == 0


PASSWORDS = {"operator": OPERATOR_PASSWORD, "outsider": "outsider-pass-1"}
# (user, device id, endpoint id); names in the ids are looked up in the test.
NOT_FOUND = {
    "a user without READ": ("outsider", "device", "proxy"),
    "an SSH endpoint": ("operator", "device", "ssh"),
    "an unknown device": ("operator", "unknown", "proxy"),
    "an unknown endpoint": ("operator", "device", "unknown"),
    "another device's endpoint under this device": ("operator", "device", "other proxy"),
    "a device the user has no READ on": ("operator", "other device", "other proxy"),
    "a device id that is not a number": ("operator", "gw-0001", "proxy"),
    "an endpoint id that is not a number": ("operator", "device", "abc"),
    "a huge device id": ("operator", "9" * 30, "proxy"),
    "a huge endpoint id": ("operator", "device", "9" * 30),
}


@pytest.mark.parametrize("username, device_id, endpoint_id", NOT_FOUND.values(), ids=NOT_FOUND.keys())
async def test_it_refuses_a_client_for(
    control, device, other_device, operator, outsider, proxy, ssh_endpoint, username, device_id, endpoint_id
):
    other_proxy = await database_sync_to_async(make_passthrough_endpoint)(other_device, "Other proxy")
    names = {"device": device.pk, "other device": other_device.pk, "proxy": proxy.pk, "ssh": ssh_endpoint.pk,
             "other proxy": other_proxy.pk, "unknown": 10**6}
    path = client_path(names.get(device_id, device_id), names.get(endpoint_id, endpoint_id))
    comm = communicator(path, [basic(username, PASSWORDS[username])])
    assert await is_refused(comm)
    await close(comm)
    assert await sessions_started() == 0
    assert await control.receive_nothing(timeout=QUIET)


async def test_a_refusal_is_401_without_credentials_and_404_without_access(device, outsider, proxy):
    anonymous = communicator(client_path(device.pk, proxy.pk))
    assert await refusal_status(anonymous) == 401
    await close(anonymous)
    without_read = communicator(client_path(device.pk, proxy.pk), [basic("outsider", "outsider-pass-1")])
    assert await refusal_status(without_read) == 404
    await close(without_read)


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1.evil.example", "https://localhost.evil.example:8000"]
)
async def test_it_refuses_a_foreign_origin_even_with_good_credentials(control, device, operator, proxy, origin):
    headers = [await session_cookie(operator), (b"origin", origin.encode())]
    comm = communicator(client_path(device.pk, proxy.pk), headers)
    assert await is_refused(comm)
    await close(comm)
    assert await operation_count() == 0


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1", "http://localhost:8000"])
async def test_it_allows_no_origin_or_an_allowed_one(control, device, operator, proxy, origin):
    headers = [basic("operator", OPERATOR_PASSWORD)]
    if origin:
        headers.append((b"origin", origin.encode()))
    client = await open_client(device, proxy, headers)
    await connect_request(control)
    await close(client)


@pytest.mark.parametrize(
    "subprotocols, chosen", [(None, None), (["binary"], "binary"), (["base64", "binary"], "binary"), (["base64"], None)]
)
async def test_it_echoes_the_binary_subprotocol_only_when_asked(control, device, operator, proxy, subprotocols, chosen):
    comm = communicator(client_path(device.pk, proxy.pk), [basic("operator", OPERATOR_PASSWORD)], subprotocols)
    assert await accepted(comm) == chosen
    await close(comm)


# --- before the device joins ------------------------------------------------

async def test_a_client_of_an_offline_device_is_accepted_then_closed_with_4001(device, operator, proxy):
    client = await open_client(device, proxy)
    code, reason = await closed_with(client)
    assert (code, reason) == (4001, "device is offline")
    await close(client)
    operation = await database_sync_to_async(Operation.objects.get)()
    assert (operation.status, operation.failure_reason) == (Status.FAILED, "device is offline")
    assert operation.ended is not None


async def test_the_device_gets_a_connect_request_at_once(control, device, operator, proxy):
    client = await open_client(device, proxy)
    request = await connect_request(control)
    assert (request.serial, request.hostname, request.port) == ("gw-0001", "10.0.0.67", 5900)
    assert len(request.key) >= 22  # at least 128 bits, URL-safe base64
    operation = await load_operation(request.operation_id)
    assert operation.status == Status.PENDING
    assert (operation.endpoint_name, operation.protocol) == ("Local proxy", "PASSTHROUGH")
    assert operation.username == "operator"
    # Only the key's hash is kept.
    assert operation.connection_key_hash == hash_token(request.key)
    stored = await database_sync_to_async(lambda: str(list(Operation.objects.filter(pk=operation.pk).values())))()
    assert request.key not in stored
    assert await client.receive_nothing(timeout=QUIET)
    await close(client)


async def test_every_client_gets_its_own_connection_key(control, device, operator, proxy):
    first = await open_client(device, proxy)
    second = await open_client(device, proxy)
    one, two = await connect_request(control), await connect_request(control)
    assert one.key != two.key and one.operation_id != two.operation_id
    await close_all(first, second)


async def test_bytes_sent_before_the_tunnel_joins_reach_it_in_order(control, device, token, operator, proxy):
    client = await open_client(device, proxy)
    request = await connect_request(control)
    for chunk in (b"SSH-2.0-OpenSSH_9.2\r\n", b"\x00\x00\x01", b"third"):
        await client.send_to(bytes_data=chunk)
    await asyncio.sleep(QUIET)
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    expected = b"SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x01third"
    assert b"".join(await receive_bytes(comm, len(expected))) == expected
    await client.send_to(bytes_data=b"after")
    assert await comm.receive_from(timeout=2) == b"after"
    await close_all(comm, client)


async def test_more_than_1_mib_before_the_join_is_held_back_and_delivered_once_it_joins(
    control, device, token, operator, proxy
):
    client = await open_client(device, proxy)
    request = await connect_request(control)
    frames = [bytes([n]) * (64 * 1024) for n in range(24)]  # 1.5 MiB
    for frame in frames:
        await client.send_to(bytes_data=frame)
    assert await client.receive_nothing(timeout=QUIET)  # not closed
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    received = await receive_bytes(comm, sum(map(len, frames)))
    assert b"".join(received) == b"".join(frames)
    await close_all(comm, client)
    await operation_when(request.operation_id, lambda operation: operation.bytes_to_device == 24 * 64 * 1024)


async def test_no_tunnel_within_the_key_lifetime_closes_the_client_with_4002(
    control, device, token, operator, proxy, settings
):
    settings.REMOTE_ACCESS_CONNECTION_KEY_TTL = 1
    client = await open_client(device, proxy)
    request = await connect_request(control)
    code, reason = await closed_with(client, timeout=3)
    assert (code, reason) == (4002, "device did not connect within 1 s")
    await close(client)
    operation = await load_operation(request.operation_id)
    assert (operation.status, operation.failure_reason) == (Status.FAILED, "device did not connect within 1 s")
    assert operation.ended is not None
    late = tunnel(device, token, request.key)
    assert await is_refused(late)
    await close(late)


@pytest.mark.parametrize(
    "report",
    [f'505,{{id}},"{REFUSED_BY_TARGET}"', f'502,c8y_RemoteAccessConnect,"{REFUSED_BY_TARGET}"'],
    ids=["505 by operation id", "502 after 501"],
)
async def test_a_failure_reported_by_the_device_closes_the_client_with_4003_and_its_reason(
    control, device, token, operator, proxy, report
):
    client = await open_client(device, proxy)
    request = await connect_request(control)
    if report.startswith("502"):
        await control.send_to(text_data="501,c8y_RemoteAccessConnect")
    await control.send_to(text_data=report.format(id=request.operation_id))
    assert await closed_with(client) == (4003, REFUSED_BY_TARGET)
    await close(client)
    operation = await load_operation(request.operation_id)
    assert (operation.status, operation.failure_reason) == (Status.FAILED, REFUSED_BY_TARGET)
    assert operation.ended is not None


async def test_the_client_closing_before_the_device_joins_fails_the_operation(control, device, token, operator, proxy):
    client = await open_client(device, proxy)
    request = await connect_request(control)
    await client.send_to(bytes_data=b"hello")
    await close(client)
    operation = await load_operation(request.operation_id)
    assert operation.status == Status.FAILED
    assert operation.failure_reason == "the client closed the connection before the device connected"
    assert operation.ended is not None
    late = tunnel(device, token, request.key)
    assert await is_refused(late)
    await close(late)


# --- text frames ------------------------------------------------------------

async def test_a_text_frame_from_the_client_ends_the_session(control, device, token, operator, proxy):
    client = await open_client(device, proxy)
    request = await connect_request(control)
    comm = tunnel(device, token, request.key)
    await accepted(comm)
    await client.send_to(bytes_data=b"binary is fine")
    assert await comm.receive_from(timeout=2) == b"binary is fine"
    await client.send_to(text_data="text is not")
    code, _ = await closed_with(client)
    assert code == 4010  # daphne can only send 1000 and 3000-4999, so not 1003
    await closed_with(comm)
    await close_all(comm, client)
    operation = await operation_when(request.operation_id, lambda operation: operation.ended is not None)
    assert operation.status == Status.SUCCESSFUL


async def test_a_text_frame_before_the_device_joins_closes_the_client_too(control, device, operator, proxy):
    client = await open_client(device, proxy)
    request = await connect_request(control)
    await client.send_to(text_data="hello")
    code, _ = await closed_with(client)
    assert code == 4010
    await close(client)
    assert (await load_operation(request.operation_id)).status == Status.FAILED


# --- how Cumulocity's clients authenticate --------------------------------------

@pytest.mark.parametrize("how", ["bearer login token", "login cookie and XSRF header", "token and XSRF in the query"])
async def test_a_client_authenticates_with_a_login_token(control, device, operator, proxy, how):
    token, xsrf = await database_sync_to_async(login_tokens.issue)(operator)
    path = client_path(device.pk, proxy.pk)
    if how == "bearer login token":
        headers = [bearer(token)]
    elif how == "login cookie and XSRF header":
        headers = [(b"cookie", f"authorization={token}; XSRF-TOKEN={xsrf}".encode()), (b"x-xsrf-token", xsrf.encode())]
    else:
        headers = []
        path += "?" + urlencode({"token": token, "XSRF-TOKEN": xsrf})
    comm = communicator(path, headers)
    await accepted(comm)
    await connect_request(control)
    await close(comm)


async def test_a_login_cookie_without_its_xsrf_token_is_refused(device, operator, proxy):
    token, _ = await database_sync_to_async(login_tokens.issue)(operator)
    for headers in ([(b"cookie", f"authorization={token}".encode())],
                    [(b"cookie", f"authorization={token}".encode()), (b"x-xsrf-token", b"forged")]):
        comm = communicator(client_path(device.pk, proxy.pk), headers)
        assert await is_refused(comm)
