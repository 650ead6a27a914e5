"""Attempts turned away before they became a session leave an audit record
too, when the user is known: a FAILED operation whose reason starts with
REFUSED. An unauthenticated client's attempt is only logged, so that
strangers cannot fill the audit trail."""

import logging
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from endpoints.access import has_access
from endpoints.models import Endpoint
from sessions.models import Operation, Status

log = logging.getLogger(__name__)

REFUSED = "refused: "


def record(source: Endpoint | Operation, user: Any, client_address: str | None, reason: str) -> None:
    """Record the refusal of `user`'s attempt on an endpoint or on an existing
    session. This runs a query; a database error is logged, since the attempt
    is refused either way."""
    if isinstance(source, Endpoint):
        operation = Operation.for_endpoint(source, user, client_address)
    else:
        operation = Operation(
            device_id=source.device_id, device_serial=source.device_serial, endpoint_id=source.endpoint_id,
            endpoint_name=source.endpoint_name, protocol=source.protocol, hostname=source.hostname,
            port=source.port, user=user, username=user.get_username(), client_address=client_address,
        )
    operation.status = Status.FAILED
    operation.failure_reason = REFUSED + reason
    operation.ended = timezone.now()
    log.warning("%s on %s of device %s from %s refused: %s", operation.username, operation.endpoint_name,
                operation.device_serial, client_address, reason)
    try:
        operation.save()
    except DatabaseError:
        log.exception("the refusal above could not be recorded")


def _number(value: object) -> int | None:
    text = str(value)
    return int(text) if text.isdigit() and len(text) <= 18 else None


def record_attempt(user: Any, device_id: object, endpoint_id: object, client_address: str | None,
                   reason: str) -> None:
    """A refused attempt on the endpoint the URL names: its record says why
    (no access, an endpoint of another device, or `reason`). An endpoint that
    does not exist is only logged."""
    endpoint = None
    if (number := _number(endpoint_id)) is not None:
        endpoint = Endpoint.objects.select_related("device").filter(pk=number).first()
    if endpoint is None:
        log.warning("%s from %s refused: no endpoint %.40r on device %.40r", user.get_username(), client_address,
                    str(endpoint_id), str(device_id))
        return
    if _number(device_id) != endpoint.device_id:
        reason = f"the endpoint is not on device {str(device_id)[:40]}"
    elif not has_access(user, endpoint.device):
        reason = "no access to the device"
    record(endpoint, user, client_address, reason)


def record_launch(operation_id: int, user: Any, client_address: str | None, reason: str) -> None:
    """A session page refused (its launch token used, expired or another's)."""
    operation = Operation.objects.filter(pk=operation_id).first()
    if operation is None:
        log.warning("%s from %s refused: no session %s", user.get_username(), client_address, operation_id)
        return
    record(operation, user, client_address, reason)
