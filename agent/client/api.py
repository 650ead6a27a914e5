"""What the server's JSON APIs tell the client: ids for a serial or an
endpoint's name, whether credentials are accepted, and why a tunnel was refused.

Every function here blocks (urllib); the proxy calls them in a thread. A
server without an API answers 404 for it whoever asks, while a server with it
wants credentials first: that is how "no such API" is told from "no such
device".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from agent.client.link import (
    CREDENTIALS_REFUSED,
    NO_ACCESS,
    Answer,
    ClientError,
    Link,
    Refused,
    Target,
    Unreachable,
)

CONFIGURATIONS = "/service/remoteaccess/devices/{device}/configurations"
EXTERNAL_ID = "/identity/externalIds/c8y_Serial/{serial}"
CURRENT_USER = "/user/currentUser"
PASSTHROUGH = "PASSTHROUGH"

# daphne refuses every WebSocket upgrade with 403, whatever the reason.
REFUSED_FOR_SOME_REASON = (
    "the server refused the tunnel: either it refused your credentials (run `remote-access-client login` "
    "again), or there is no such device or endpoint, or you have no access to it"
)


def _offered(link: Link, path: str, answer: Answer) -> bool:
    """Whether the server has an API at ``path`` at all (this may ask again, without credentials)."""
    if answer.is_json:
        return True
    return link.get(path, authenticated=False).status in (401, 403)


def _check(link: Link, answer: Answer, path: str) -> None:
    """Raise for what every API call may answer: refused credentials, a failing server."""
    if answer.status == 401:
        raise Refused(CREDENTIALS_REFUSED)
    if answer.status >= 500:
        raise Unreachable(f"the server at {link.server} answered HTTP {answer.status} for {path}")


def device_id(link: Link, device: str) -> str:
    """The server's id of ``device``: a number is one already; anything else is a serial to look up."""
    if device.isdigit():
        return device
    path = EXTERNAL_ID.format(serial=quote(device, safe=""))
    answer = link.get(path)
    _check(link, answer, path)
    if answer.status == 200:
        data = answer.json()
        try:
            return str(data["managedObject"]["id"])
        except (KeyError, TypeError):
            raise ClientError(f"unexpected answer from {link.server}{path}: no managedObject.id") from None
    if not _offered(link, path, answer):
        raise ClientError(
            "the server does not offer the identity API: pass the device's numeric id "
            "(the number in its page's address, /devices/<id>/)"
        )
    if answer.status in (403, 404):
        raise Refused(f"no device with serial {device!r}, or you have no access to it")
    raise ClientError(f"unexpected answer from {link.server}{path}: HTTP {answer.status}")


def configurations(link: Link, device: str) -> list[dict[str, Any]] | None:
    """The device's endpoints, or None when the server has no configurations API."""
    path = CONFIGURATIONS.format(device=quote(device, safe=""))
    answer = link.get(path)
    _check(link, answer, path)
    if answer.status == 200:
        data = answer.json()
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise ClientError(f"unexpected answer from {link.server}{path}: not a list of configurations")
        return data
    if not _offered(link, path, answer):
        return None
    if answer.status in (403, 404):
        raise Refused(f"no device {device}, or you have no access to it")
    raise ClientError(f"unexpected answer from {link.server}{path}: HTTP {answer.status}")


def _describe(config: dict[str, Any]) -> str:
    return f"{config.get('name')!r} ({config.get('id')}, {config.get('protocol')})"


def _not_passthrough(device: str, config: dict[str, Any]) -> Refused:
    return Refused(
        f"endpoint {_describe(config)} of device {device} is not a PASSTHROUGH endpoint: "
        "the client can only reach PASSTHROUGH endpoints"
    )


def config_id(link: Link, device: str, config: str) -> str:
    """The id of ``device``'s endpoint ``config``: a number is one already; anything else is a name."""
    if config.isdigit():
        return config
    listing = configurations(link, device)
    if listing is None:
        raise ClientError(
            "the server does not offer the configurations API: pass the endpoint's numeric id to --config "
            "(the number in its edit page's address, /devices/<device>/remote-access/<id>/edit/)"
        )
    matches = [c for c in listing if c.get("name") == config] or [
        c for c in listing if str(c.get("name", "")).casefold() == config.casefold()
    ]
    if len(matches) > 1:
        # Names need not be unique; only PASSTHROUGH endpoints are any use here.
        matches = [c for c in matches if c.get("protocol") == PASSTHROUGH] or matches
    if not matches:
        known = ", ".join(_describe(c) for c in listing) or "none"
        raise Refused(f"device {device} has no endpoint named {config!r}; its endpoints: {known}")
    if len(matches) > 1:
        ids = ", ".join(str(c.get("id")) for c in matches)
        raise ClientError(f"device {device} has several endpoints named {config!r} ({ids}): pass one's id to --config")
    if matches[0].get("protocol") != PASSTHROUGH:
        raise _not_passthrough(device, matches[0])
    return str(matches[0]["id"])


def resolve(link: Link, device: str, config: str) -> Target:
    found = device_id(link, device)
    return Target(found, config_id(link, found, config))


def refusal(link: Link, target: Target, status: int) -> ClientError:
    """Why the server refused to open the tunnel with HTTP ``status``, as clearly as it can be told."""
    if status == 401:
        return Refused(CREDENTIALS_REFUSED)
    if status >= 500:
        return Unreachable(f"the server at {link.server} answered HTTP {status}")
    if status not in (403, 404):
        return ClientError(f"the server at {link.server} refused the tunnel with HTTP {status}")
    # A 403 may mean anything (see above): the configurations API can say which.
    path = CONFIGURATIONS.format(device=quote(target.device_id, safe="")) + "/" + quote(target.config_id, safe="")
    fallback = NO_ACCESS if status == 404 else REFUSED_FOR_SOME_REASON
    try:
        answer = link.get(path)
        if answer.status == 401:
            return Refused(CREDENTIALS_REFUSED)
        if answer.status == 200:
            data = answer.json()
            if isinstance(data, dict) and data.get("protocol") not in (None, PASSTHROUGH):
                return _not_passthrough(target.device_id, data)
            return Refused(f"the server refused the tunnel to {target} (HTTP {status}), though it lists that endpoint")
        if answer.status in (403, 404) and _offered(link, path, answer):
            return Refused(NO_ACCESS)
    except Unreachable:
        pass
    return Refused(fallback)


def check_credentials(link: Link) -> str:
    """Ask who we are (Cumulocity's ``/user/currentUser``); return what to tell the person.

    Raises :class:`Refused` when the server refuses the credentials and
    :class:`Unreachable` when it does not answer; a server without that API
    only has to answer at its root.
    """
    answer = link.get(CURRENT_USER)
    if answer.status == 401:
        raise Refused("the server refused these credentials")
    if answer.status >= 500:
        raise Unreachable(f"the server at {link.server} answered HTTP {answer.status}")
    if answer.status == 200:
        data = answer.json()
        name = data.get("userName") or data.get("id") if isinstance(data, dict) else None
        return f"accepted, as user {name}" if name else "accepted"
    root = link.get("/", authenticated=False)
    if root.status >= 500:
        raise Unreachable(f"the server at {link.server} answered HTTP {root.status}")
    return "not checked (the server answers, but has no API to check them with); they are checked when a tunnel opens"
