"""Fixtures of the tests that drive the WebSocket endpoints in-process."""

import pytest
import pytest_asyncio

from tests.asgi.helpers import (
    AGENT_PATH,
    accepted,
    close,
    communicator,
    device_basic,
    issue_device_token,
    make_passthrough_endpoint,
    reset_channel_layers,
)


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings):
    # Passwords are checked the same way, without a deliberately slow hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    reset_channel_layers()
    yield
    reset_channel_layers()


@pytest.fixture
def token(device) -> str:
    return issue_device_token(device)


@pytest.fixture
def other_token(other_device) -> str:
    return issue_device_token(other_device)


@pytest.fixture
def proxy(device):
    return make_passthrough_endpoint(device)


@pytest_asyncio.fixture
async def control(device, token):
    """The device's control channel, connected: the device is online."""
    comm = communicator(AGENT_PATH, [device_basic(device, token)])
    await accepted(comm)
    yield comm
    await close(comm)
