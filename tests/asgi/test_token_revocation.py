"""Revoking an API token ends the passthrough sessions opened with it, at
once, and no other session."""

import pytest
from channels.db import database_sync_to_async

from portal.models import ApiToken
from sessions.revocation import revoke_api_token
from tests.asgi.helpers import (
    accepted,
    basic,
    bearer,
    client_path,
    close_all,
    closed_with,
    communicator,
    connect_request,
    device_basic,
    load_operation,
    open_client,
    operation_when,
    receive_bytes,
    tunnel_path,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def issue(user, name: str) -> tuple[ApiToken, str]:
    return ApiToken.issue(user, name)


async def joined_session(control, device, token, proxy, headers):
    """A passthrough client whose device tunnel has joined: (client, tunnel, operation id)."""
    client = await open_client(device, proxy, headers)
    request = await connect_request(control)
    tunnel = communicator(tunnel_path(request.key), [device_basic(device, token)])
    assert (await tunnel.connect())[0]
    await client.send_to(bytes_data=b"ping")
    assert b"".join(await receive_bytes(tunnel, 4)) == b"ping"
    return client, tunnel, request.operation_id


async def test_revoking_a_token_closes_its_sessions_with_4401_and_records_why(
    control, device, token, operator, proxy
):
    record, api_token = await issue(operator, "laptop")
    _, other_token = await issue(operator, "ci")
    revoked = await joined_session(control, device, token, proxy, [bearer(api_token)])
    kept = await joined_session(control, device, token, proxy, [bearer(other_token)])
    by_password = await joined_session(control, device, token, proxy, [basic("operator", "operator-pass-1")])

    assert await database_sync_to_async(revoke_api_token)(record) == 1

    assert await closed_with(revoked[0]) == (4401, "API token revoked")
    assert (await revoked[1].receive_output())["type"] == "websocket.close", "the device's tunnel stays open"
    operation = await operation_when(revoked[2], lambda op: op.ended is not None)
    assert operation.end_reason == "API token revoked" and operation.api_token_id is None
    for client, tunnel, operation_id in (kept, by_password):
        await client.send_to(bytes_data=b"still")
        assert b"".join(await receive_bytes(tunnel, 5)) == b"still"
        assert (await load_operation(operation_id)).ended is None
    await close_all(*kept[:2], *by_password[:2], revoked[0], revoked[1])


async def test_a_session_still_waiting_for_its_device_ends_too(control, device, operator, proxy):
    record, api_token = await issue(operator, "laptop")
    client = communicator(f"{client_path(device.pk, proxy.pk)}?token={api_token}")
    await accepted(client)
    request = await connect_request(control)
    assert await database_sync_to_async(revoke_api_token)(record) == 1
    assert await closed_with(client) == (4401, "API token revoked")
    operation = await operation_when(request.operation_id, lambda op: op.ended is not None)
    assert (operation.status, operation.failure_reason) == ("FAILED", "API token revoked")
    await close_all(client)


@database_sync_to_async
def deactivate(user) -> None:
    user.is_active = False
    user.save()


@database_sync_to_async
def delete(user) -> None:
    user.delete()


@pytest.mark.parametrize("action, reason", [(deactivate, "user deactivated"), (delete, "user deleted")])
async def test_deactivating_or_deleting_a_user_ends_their_sessions(control, device, token, operator, proxy,
                                                                    action, reason):
    session = await joined_session(control, device, token, proxy, [basic("operator", "operator-pass-1")])
    await action(operator)
    assert await closed_with(session[0]) == (4401, reason)
    operation = await operation_when(session[2], lambda op: op.ended is not None)
    assert operation.end_reason == reason
    await close_all(*session[:2])
