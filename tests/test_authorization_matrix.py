"""The authorization matrix: every route of the URL map, HTTP and WebSocket,
against every kind of caller, in one table each.

The routes are read from the URL map itself, so a new route fails here until
someone decides who may use it. The details of each route (bodies, shapes,
messages, CSRF) are tested elsewhere; this is the systematic sweep of who
gets in.

Expected values are what the caller sees:
  login  302 to a login page (pages, when the caller may not be there yet)
  302    a redirect anywhere else (the action was allowed)
  404    the device, endpoint or session is hidden from this caller
  403    the caller may see it but not change it (READ without ADMIN), or lacks
         a model-level permission
  401    an API call without (acceptable) credentials
  -      not applicable (pages take no device credentials)

Personas: anonymous; outsider (no rights); operator (READ on `device`); owner
(ADMIN on `device`); staff (is_staff, no device rights); superuser; device
(another device's credentials, on the routes devices and API clients call).
Pages are visited with a logged-in session; API routes (via `api`) get the
persona's password as HTTP Basic, as c8ylp and our client send it.
"""

import asyncio
import base64
import json
import re
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from endpoints.models import Device, Endpoint, RemoteAccessSettings
from portal.models import ApiToken
from sessions import operations
from sessions.models import Operation
from sessions.refusals import REFUSED
from sessions.routing import websocket_urlpatterns
from tests.asgi.helpers import (
    AGENT_PATH,
    WAIT,
    accepted,
    basic,
    close_all,
    communicator,
    connect_request,
    device_basic,
    issue_device_token,
    make_passthrough_endpoint,
    open_client,
    reset_channel_layers,
)

PERSONAS = ["anonymous", "outsider", "operator", "owner", "staff", "superuser", "device"]

# --- the HTTP matrix -------------------------------------------------------------
# One row per route and method. Every route of the URL map must have its GET
# row, and a row for each state-changing method it has.
HTTP_MATRIX = """
route                                                              method  via   anonymous outsider operator owner staff superuser device
/                                                                  GET     page  302       302      302      302   302   302       -
/accounts/login/                                                   GET     page  200       200      200      200   200   200       -
/accounts/login/                                                   POST    page  200       302      302      302   302   302       -
/accounts/logout/                                                  GET     page  405       405      405      405   405   405       -
/accounts/logout/                                                  POST    page  login     login    login    login login login     -
/accounts/profile/                                                 GET     page  login     200      200      200   200   200       -
/accounts/profile/                                                 POST    page  login     200      200      200   200   200       -
/accounts/profile/tokens/<int:token_id>/revoke/                    GET     page  login     405      405      405   405   405       -
/accounts/profile/tokens/<int:token_id>/revoke/                    POST    page  login     302      302      302   302   302       -
/admin/                                                            GET     page  login     login    login    login 200   200       -
/tenant/loginOptions                                               GET     api   200       200      200      200   200   200       200
/tenant/oauth                                                      GET     api   405       405      405      405   405   405       405
/tenant/oauth                                                      POST    api   401       200      200      200   200   200       401
/tenant/currentTenant                                              GET     api   401       200      200      200   200   200       401
/user/currentUser                                                  GET     api   401       200      200      200   200   200       401
/identity/externalIds/<str:id_type>/<str:serial>                   GET     api   401       404      200      200   404   200       401
/inventory/managedObjects/<str:device_id>                          GET     api   401       404      200      200   404   200       401
/devices/                                                          GET     page  login     200      200      200   200   200       -
/devices/register/                                                 GET     page  login     403      403      403   403   200       -
/devices/register/                                                 POST    page  login     403      403      403   403   200       -
/devices/<int:device_id>/                                          GET     page  login     404      302      302   404   302       -
/devices/<int:device_id>/remote-access/                            GET     page  login     404      200      200   404   200       -
/devices/<int:device_id>/remote-access/add/<slug:protocol>/        GET     page  login     404      403      200   404   200       -
/devices/<int:device_id>/remote-access/add/<slug:protocol>/        POST    page  login     404      403      302   404   302       -
/devices/<int:device_id>/remote-access/<int:endpoint_id>/edit/     GET     page  login     404      403      200   404   200       -
/devices/<int:device_id>/remote-access/<int:endpoint_id>/edit/     POST    page  login     404      403      302   404   302       -
/devices/<int:device_id>/remote-access/<int:endpoint_id>/remove/   GET     page  login     404      403      200   404   200       -
/devices/<int:device_id>/remote-access/<int:endpoint_id>/remove/   POST    page  login     404      403      302   404   302       -
/settings/remote-access/                                           GET     page  login     403      403      403   200   200       -
/settings/remote-access/                                           POST    page  login     403      403      403   302   302       -
/service/remoteaccess/registration                                 GET     api   405       405      405      405   405   405       405
/service/remoteaccess/registration                                 POST    api   401       401      401      401   401   401       401
/service/remoteaccess/devices/<str:device_id>/configurations       GET     api   401       404      200      200   404   200       401
/service/remoteaccess/devices/<str:device_id>/configurations       POST    api   401       404      403      201   404   201       401
/service/remoteaccess/devices/<str:device_id>/configurations/<str:endpoint_id>  GET     api   401  404  200  200  404  200  401
/service/remoteaccess/devices/<str:device_id>/configurations/<str:endpoint_id>  PUT     api   401  404  403  200  404  200  401
/service/remoteaccess/devices/<str:device_id>/configurations/<str:endpoint_id>  DELETE  api   401  404  403  204  404  204  401
/service/remoteaccess/keypair/generate                             GET     api   401       405      405      405   405   405       401
/service/remoteaccess/keypair/generate                             POST    api   401       200      200      200   200   200       401
/service/remoteaccess/health                                       GET     api   200       200      200      200   200   200       200
/devices/<int:device_id>/control/                                  GET     page  login     404      200      200   404   200       -
/sessions/<int:operation_id>/                                      GET     page  login     404      200      404   404   404       -
/devices/<int:device_id>/remote-access/<int:endpoint_id>/connect/  GET     page  login     405      405      405   405   405       -
/devices/<int:device_id>/remote-access/<int:endpoint_id>/connect/  POST    page  login     404      302      302   404   302       -
"""

# Cells that reveal a real flaw: (route, method, persona) -> why. Each is
# xfail(strict=True), so fixing the flaw makes the cell pass and fail here.
FLAWS: dict[tuple[str, str, str], str] = {}


def parse_matrix(text: str) -> dict[tuple[str, str], tuple[str, dict[str, str]]]:
    lines = [line.split() for line in text.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header == ["route", "method", "via", *PERSONAS], header
    matrix = {}
    for route, method, via, *cells in rows:
        assert via in ("page", "api") and len(cells) == len(PERSONAS), (route, method)
        assert (route, method) not in matrix, f"{method} {route} is in the matrix twice"
        matrix[route, method] = via, dict(zip(PERSONAS, cells))
    return matrix


MATRIX = parse_matrix(HTTP_MATRIX)

# --- the routes, from the URL map ------------------------------------------------
PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
STATIC_PREFIXES = tuple(
    prefix.strip("/") + "/" for prefix in (django_settings.STATIC_URL, getattr(django_settings, "MEDIA_URL", ""))
    if prefix and prefix.strip("/")
)


def http_routes() -> list[str]:
    """Every HTTP route of the URL map, as "/" + its pattern; of the Django
    admin only its index."""
    routes: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if getattr(pattern, "namespace", None) == "admin":
                    routes.append("/" + route)
                    continue
                walk(pattern.url_patterns, route)
            elif not route.startswith(STATIC_PREFIXES):
                routes.append("/" + route)

    walk(get_resolver().url_patterns, "")
    return list(dict.fromkeys(routes))


def websocket_routes() -> list[str]:
    routes: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            else:
                assert isinstance(pattern, URLPattern)
                routes.append("/" + route)

    walk(websocket_urlpatterns, "")
    return routes


HTTP_ROUTES = http_routes()
WEBSOCKET_ROUTES = websocket_routes()


def parameters(route: str) -> list[str]:
    return [match["name"] for match in PARAMETER.finditer(route)]


def new_route(route: str, detail: str = "") -> None:
    pytest.fail(f"new route {route}: add it to the authorization matrix" + (f" ({detail})" if detail else ""))


def concrete(route: str, values: dict) -> str:
    """The route with each parameter filled in; an unknown parameter means a
    route nobody has placed in the matrix yet."""
    unknown = [name for name in parameters(route) if name not in values]
    if unknown:
        new_route(route, f"no value for {', '.join(unknown)}")
    return PARAMETER.sub(lambda match: str(values[match["name"]]()), route)


# --- the world every cell runs in ------------------------------------------------
PASSWORDS = {  # the fixtures' own, in tests/conftest.py
    "owner": ("owner", "owner-pass-1"),
    "operator": ("operator", "operator-pass-1"),
    "outsider": ("outsider", "outsider-pass-1"),
    "staff": ("staffer", "staff-pass-1"),
    "superuser": ("root", "root-pass-1"),
}
NOBODY = ("nobody", "not-a-password-1")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # Passwords are checked the same way, without a deliberately slow hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(device, other_device, owner, operator, outsider, staff, superuser, ssh_endpoint):
    operation = Operation.for_endpoint(ssh_endpoint, operator, None)
    operation.save()
    return SimpleNamespace(
        device=device, other_device=other_device, endpoint=ssh_endpoint, operation=operation,
        other_token=issue_device_token(other_device),
        users={"owner": owner, "operator": operator, "outsider": outsider, "staff": staff, "superuser": superuser},
    )


def http_values(world, persona: str) -> dict:
    """Each route parameter's value, for this caller (lazily: some create rows)."""

    def own_token() -> int:
        # Anonymous callers have no token of their own: they try the operator's.
        user = world.users.get(persona, world.users["operator"])
        return ApiToken.issue(user, "matrix")[0].pk

    return {
        "device_id": lambda: world.device.pk,
        "endpoint_id": lambda: world.endpoint.pk,
        "operation_id": lambda: world.operation.pk,
        "protocol": lambda: "ssh",
        "token_id": own_token,
        "id_type": lambda: "c8y_Serial",
        "serial": lambda: world.device.serial,
        "connection_key": lambda: "any-connection-key",
    }


def credentials(world, persona: str) -> tuple[str, str]:
    if persona == "device":
        return f"device_{world.other_device.serial}", world.other_token
    return PASSWORDS.get(persona, NOBODY)


NEW_SSH = {"name": "New shell", "hostname": "10.0.0.9", "port": "22", "credentials_type": "USER_PASS",
           "username": "pi", "password": "new-ssh-pass"}
NEW_CONFIGURATION = {"name": "New shell", "hostname": "10.0.0.9", "port": 22, "protocol": "SSH",
                     "credentialsType": "USER_PASS", "username": "pi", "password": "new-ssh-pass"}


def body(route: str, method: str, world, persona: str) -> tuple[object, str | None]:
    """What a write sends: (data, JSON content type or None for a form)."""
    username, password = credentials(world, persona)
    forms = {
        "/accounts/login/": {"username": username, "password": password},
        "/accounts/profile/": {"name": "laptop"},
        "/tenant/oauth": {"grant_type": "PASSWORD", "username": username, "password": password},
        "/devices/register/": {"serial": "gw-0100", "name": "New gateway"},
        "/devices/<int:device_id>/remote-access/add/<slug:protocol>/": NEW_SSH,
        "/devices/<int:device_id>/remote-access/<int:endpoint_id>/edit/": {**NEW_SSH, "name": "Renamed shell"},
        "/settings/remote-access/": {"auto_save_host_key": "on"},
    }
    documents = {
        "/service/remoteaccess/registration": {"deviceId": world.device.serial,
                                               "oneTimePassword": "not-the-one-time-password"},
        "/service/remoteaccess/devices/<str:device_id>/configurations": NEW_CONFIGURATION,
        "/service/remoteaccess/devices/<str:device_id>/configurations/<str:endpoint_id>": {"name": "Renamed"},
    }
    if route in documents:
        return json.dumps(documents[route]), "application/json"
    return forms.get(route, {}), None


def state() -> tuple:
    """What a refused request must leave as it was (but for the audit record
    of the refusal itself)."""
    return (
        list(Endpoint.objects.order_by("pk").values_list("pk", "name", "hostname", "port", "protocol")),
        list(Device.objects.order_by("pk").values_list("pk", "serial", "name", "token_hash", "otp_hash")),
        list(ApiToken.objects.order_by("pk").values_list("pk", "user_id")),
        list(Operation.objects.exclude(failure_reason__startswith=REFUSED).order_by("pk").values_list("pk", "status")),
        RemoteAccessSettings.load().auto_save_host_key,
    )


LOGIN_PAGES = {"/accounts/login/", "/admin/login/"}


def outcome(response) -> str:
    """The response as the matrix writes it."""
    if response.status_code == 302:
        return "login" if urlparse(response.url).path in LOGIN_PAGES else "302"
    return str(response.status_code)


def http_cells():
    for (route, method), (via, expected) in MATRIX.items():
        for persona, cell in expected.items():
            if cell == "-":
                continue
            marks = []
            if (route, method, persona) in FLAWS:
                marks.append(pytest.mark.xfail(strict=True, reason=FLAWS[route, method, persona]))
            yield pytest.param(route, method, via, persona, cell, marks=marks,
                               id=f"{persona} {method} {route} gets {cell}")


# --- every route is in the matrix ------------------------------------------------

@pytest.mark.parametrize("route", HTTP_ROUTES)
def test_every_http_route_is_in_the_matrix(route):
    methods = [method for (known, method) in MATRIX if known == route]
    if "GET" not in methods:
        new_route(route)
    unknown = [name for name in parameters(route) if name not in http_values(None, "anonymous")]
    if unknown:
        new_route(route, f"no value for {', '.join(unknown)}")


def test_the_matrix_has_no_row_for_a_route_that_is_gone():
    assert sorted({route for route, _ in MATRIX} - set(HTTP_ROUTES)) == []


def test_a_route_with_a_parameter_the_matrix_does_not_know_fails_as_a_new_route():
    with pytest.raises(pytest.fail.Exception, match=r"new route /things/<int:thing_id>/: add it to the authorization matrix"):
        concrete("/things/<int:thing_id>/", {"device_id": lambda: 1})


# --- the HTTP cells --------------------------------------------------------------

@pytest.mark.parametrize("route, method, via, persona, expected", list(http_cells()))
def test_each_persona_gets_what_the_matrix_says(world, route, method, via, persona, expected):
    if route not in HTTP_ROUTES:
        pytest.fail(f"{route} is no longer in the URL map: remove its rows from the matrix")
    client = Client(enforce_csrf_checks=False)  # CSRF is tested elsewhere
    headers = {}
    if persona in world.users and via == "page":
        client.force_login(world.users[persona])
    elif persona != "anonymous" and via == "api":
        username, password = credentials(world, persona)
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    url = concrete(route, http_values(world, persona))
    before = state()
    if method == "GET":
        response = client.get(url, **headers)
    else:
        data, content_type = body(route, method, world, persona)
        kwargs = {"content_type": content_type} if content_type else {}
        response = getattr(client, method.lower())(url, data, **kwargs, **headers)
    got = outcome(response)
    assert got == expected, f"{persona} {method} {url}: {response.status_code} {getattr(response, 'url', '')}"
    if got in ("login", "401", "403", "404", "405"):
        assert state() == before, f"a refused {method} {url} changed something"


# --- the WebSocket matrix --------------------------------------------------------
# Who gets connected on each WebSocket route. Outcomes:
#   connected       the upgrade is accepted (and, on a session page, the
#                   session starts: "connecting to device…")
#   refused         closed before the upgrade completes
#   not theirs      accepted, then told the session link cannot be used and
#                   closed with 4403; nothing about the session is shown
#   other device    accepted, but as the device the credentials belong to:
#                   this device stays offline
ORIGIN = (b"origin", b"http://localhost")
FOREIGN_ORIGIN = (b"origin", b"https://evil.example")


def user_basic(persona: str) -> tuple[bytes, bytes]:
    return basic(*PASSWORDS[persona])


WEBSOCKET_MATRIX = {
    "/service/remoteaccess/agent": {
        "this device's credentials": ("connected", lambda w: [device_basic(w.device, w.token)]),
        "this device's name with another device's token": (
            "refused", lambda w: [device_basic(w.device, w.other_token)]),
        "another device's own credentials": ("other device", lambda w: [device_basic(w.other_device, w.other_token)]),
        "the operator's password": ("refused", lambda w: [user_basic("operator")]),
        "the operator's session cookie": ("refused", lambda w: [w.cookies["operator"]]),
        "anonymous": ("refused", lambda w: []),
    },
    "/service/remoteaccess/device/<str:connection_key>": {
        "this device's credentials": ("connected", lambda w: [device_basic(w.device, w.token)]),
        "another device's credentials": ("refused", lambda w: [device_basic(w.other_device, w.other_token)]),
        "the operator's password": ("refused", lambda w: [user_basic("operator")]),
        "anonymous": ("refused", lambda w: []),
    },
    "/service/remoteaccess/client/<str:device_id>/configurations/<str:endpoint_id>": {
        "the operator's password": ("connected", lambda w: [user_basic("operator")]),
        "the owner's password": ("connected", lambda w: [user_basic("owner")]),
        "the superuser's password": ("connected", lambda w: [user_basic("superuser")]),
        "the outsider's password": ("refused", lambda w: [user_basic("outsider")]),
        "the staff's password": ("refused", lambda w: [user_basic("staff")]),
        "this device's credentials": ("refused", lambda w: [device_basic(w.device, w.token)]),
        "another device's credentials": ("refused", lambda w: [device_basic(w.other_device, w.other_token)]),
        "anonymous": ("refused", lambda w: []),
    },
    "/ws/sessions/<int:operation_id>/": {
        "its own user with the launch token": ("connected", lambda w: [w.cookies["operator"], ORIGIN]),
        "its own user from a foreign origin": ("refused", lambda w: [w.cookies["operator"], FOREIGN_ORIGIN]),
        "its own user without the launch token": ("not theirs", lambda w: [w.cookies["operator"], ORIGIN]),
        "the owner with the launch token": ("not theirs", lambda w: [w.cookies["owner"], ORIGIN]),
        "the outsider with the launch token": ("not theirs", lambda w: [w.cookies["outsider"], ORIGIN]),
        "the superuser with the launch token": ("not theirs", lambda w: [w.cookies["superuser"], ORIGIN]),
        "anonymous with the launch token": ("refused", lambda w: [ORIGIN]),
    },
    # Every other path.
    "/": {
        "the operator's session cookie": ("refused", lambda w: [w.cookies["operator"], ORIGIN]),
        "the operator's password": ("refused", lambda w: [user_basic("operator")]),
        "this device's credentials": ("refused", lambda w: [device_basic(w.device, w.token)]),
        "anonymous": ("refused", lambda w: []),
    },
}
WEBSOCKET_FLAWS: dict[tuple[str, str], str] = {}


def websocket_cells():
    for route, callers in WEBSOCKET_MATRIX.items():
        for caller, (expected, _) in callers.items():
            marks = []
            if (route, caller) in WEBSOCKET_FLAWS:
                marks.append(pytest.mark.xfail(strict=True, reason=WEBSOCKET_FLAWS[route, caller]))
            yield pytest.param(route, caller, expected, marks=marks, id=f"{caller} on {route} is {expected}")


@pytest.mark.parametrize("route", WEBSOCKET_ROUTES)
def test_every_websocket_route_is_in_the_matrix(route):
    if route not in WEBSOCKET_MATRIX:
        new_route(route)
    unknown = [name for name in parameters(route) if name not in WEBSOCKET_PARAMETERS]
    if unknown:
        new_route(route, f"no value for {', '.join(unknown)}")


def test_the_websocket_matrix_has_no_row_for_a_route_that_is_gone():
    assert sorted(set(WEBSOCKET_MATRIX) - set(WEBSOCKET_ROUTES)) == []


WEBSOCKET_PARAMETERS = {
    "device_id": lambda w: w.device.pk,
    "endpoint_id": lambda w: w.proxy.pk,  # the passthrough endpoint
    "connection_key": lambda w: w.connection_key,  # of this device's operation, made as the server makes it
    "operation_id": lambda w: w.session.pk,  # the operator's browser session
}


@pytest.fixture
def websocket_world(world):
    reset_channel_layers()
    operation, launch = operations.start_browser_session(world.endpoint, world.users["operator"], None)
    cookies = {}
    for persona, user in world.users.items():
        client = Client()
        client.force_login(user)
        name = django_settings.SESSION_COOKIE_NAME
        cookies[persona] = (b"cookie", f"{name}={client.cookies[name].value}".encode())
    yield SimpleNamespace(
        **vars(world), token=issue_device_token(world.device), proxy=make_passthrough_endpoint(world.device),
        session=operation, launch=launch, cookies=cookies, connection_key="",
    )
    reset_channel_layers()


@database_sync_to_async
def online(device: Device) -> bool:
    device.refresh_from_db()
    return bool(device.is_online and device.control_channel)


async def first_status(comm) -> dict:
    while True:
        message = await comm.receive_output(timeout=WAIT)
        assert message["type"] == "websocket.send", message
        if message.get("text"):
            return json.loads(message["text"])


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route, caller, expected", list(websocket_cells()))
async def test_each_caller_gets_the_websocket_the_matrix_says(websocket_world, route, caller, expected):
    w = websocket_world
    if route not in WEBSOCKET_ROUTES:
        pytest.fail(f"{route} is no longer in the WebSocket routes: remove it from the matrix")
    opened = []
    try:
        if "connection_key" in parameters(route):
            # A real connection key: the device online, a local proxy asking for a session.
            control = communicator(AGENT_PATH, [device_basic(w.device, w.token)])
            await accepted(control)
            opened.append(control)
            opened.append(await open_client(w.device, w.proxy))
            w.connection_key = (await connect_request(control)).key
        path = concrete(route, {name: (lambda value=value: value(w)) for name, value in WEBSOCKET_PARAMETERS.items()})
        if route.startswith("/ws/sessions/") and "without the launch token" not in caller:
            path += f"?launch={w.launch}"
        comm = communicator(path, WEBSOCKET_MATRIX[route][caller][1](w))
        connected, _ = await comm.connect(timeout=WAIT)
        if connected:
            opened.insert(0, comm)
        if expected == "refused":
            assert not connected, f"{caller} got a WebSocket on {path}"
        elif expected == "not theirs":
            assert connected
            status = await first_status(comm)
            assert status["state"] == "disconnected" and "already used or has expired" in status["message"], status
            closing = await comm.receive_output(timeout=WAIT)
            assert closing == {"type": "websocket.close", "code": 4403}, closing
            opened.remove(comm)
            # And the link stays usable by its own user.
            assert await database_sync_to_async(
                lambda: Operation.objects.get(pk=w.session.pk).launch_token_hash != ""
            )()
        else:
            assert connected, f"{caller} was refused on {path}"
            if route.startswith("/ws/sessions/"):
                assert (await first_status(comm))["state"] == "connecting"
            if route == "/service/remoteaccess/agent":
                assert await online(w.device) is (expected == "connected")
                assert await online(w.other_device) is (expected == "other device")
    finally:
        await close_all(*opened)
        await asyncio.sleep(0)
