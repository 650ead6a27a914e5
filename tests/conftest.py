from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, User
from guardian.shortcuts import assign_perm

from endpoints.models import CredentialsType, Device, DeviceGroup, Endpoint, Protocol
from tests.live import Gateway, live_gateway, printed_log


@pytest.fixture
def device(db) -> Device:
    return Device.objects.create(serial="gw-0001", name="Line 1 gateway")


@pytest.fixture
def other_device(db) -> Device:
    return Device.objects.create(serial="gw-0002", name="Line 2 gateway")


@pytest.fixture
def owner(db, device) -> User:
    """Holds ADMIN on `device`."""
    user = User.objects.create_user("owner", password="owner-pass-1")
    assign_perm("remote_access_admin", user, device)
    return user


@pytest.fixture
def operator(db, device) -> User:
    """Holds READ on `device`."""
    user = User.objects.create_user("operator", password="operator-pass-1")
    assign_perm("remote_access_read", user, device)
    return user


@pytest.fixture
def outsider(db) -> User:
    """Holds nothing."""
    return User.objects.create_user("outsider", password="outsider-pass-1")


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_user("staffer", password="staff-pass-1", is_staff=True)


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", "", "root-pass-1")


@pytest.fixture
def device_group(db, device) -> DeviceGroup:
    group = DeviceGroup.objects.create(name="Plant A")
    device.group = group
    device.save(update_fields=["group"])
    return group


@pytest.fixture
def user_group(db) -> Group:
    return Group.objects.create(name="technicians")


@pytest.fixture
def ssh_endpoint(device) -> Endpoint:
    return Endpoint.objects.create(
        device=device,
        name="PLC shell",
        protocol=Protocol.SSH,
        hostname="10.0.0.5",
        port=22,
        credentials_type=CredentialsType.USER_PASS,
        username="pi",
        password="s3cret-ssh-password",
    )


@pytest.fixture
def vnc_endpoint(device) -> Endpoint:
    return Endpoint.objects.create(
        device=device,
        name="HMI screen",
        protocol=Protocol.VNC,
        hostname="10.0.0.67",
        port=5900,
        credentials_type=CredentialsType.PASS_ONLY,
        password="vnc-pass",
    )


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory) -> None:
    """Keep the test database in a file, so that servers the tests start in
    other processes (the gateway, via tests/live.py) can share it."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        path = tmp_path_factory.mktemp("database") / "test.sqlite3"
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(path)


@pytest.fixture(autouse=True)
def forget_login_failures():
    """The lock-out counts live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker) -> Iterator[Gateway]:
    """The gateway in its own process, sharing the test database, for a whole
    module; a module that needs it otherwise overrides this with live_gateway."""
    with live_gateway(django_db_blocker) as server:
        yield server


@pytest.fixture
def gateway_log(gateway: Gateway) -> Iterator[None]:
    """The gateway's log lines of a test, shown when it fails; modules of live
    tests use it with pytestmark = pytest.mark.usefixtures("gateway_log")."""
    with printed_log(gateway):
        yield
