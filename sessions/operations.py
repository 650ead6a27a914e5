"""The life of an operation in the database: created with its connection key,
moved by the device's reports and by its tunnel, ended with its byte counts.

Every status change is one conditional UPDATE, so concurrent reports, tunnels
and timeouts on any worker cannot both win.
"""

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from endpoints.models import Device, Endpoint, hash_token
from sessions import smartrest, worker
from sessions.models import Operation, Status

log = logging.getLogger(__name__)

OPEN = [Status.PENDING, Status.EXECUTING]
# The end of a session is its audit and is written once: a database still
# locked after its own busy timeout (SQLite: 20 s) gets more tries.
END_ATTEMPTS = 3
LAUNCH_TTL = timedelta(seconds=60)


@dataclass
class NewOperation:
    operation: Operation
    connection_key: str

    @property
    def connect_line(self) -> str:
        op = self.operation
        return smartrest.format_line(530, op.device_serial, op.hostname, op.port, self.connection_key, op.pk)


def key_ttl() -> timedelta:
    return timedelta(seconds=settings.REMOTE_ACCESS_CONNECTION_KEY_TTL)


def create(endpoint: Endpoint, user: object, client_address: str | None, client_channel: str = "",
           api_token_id: int | None = None) -> NewOperation:
    """A PENDING operation with a fresh connection key; FAILED at once when the
    device is offline."""
    operation = Operation.for_endpoint(endpoint, user, client_address)
    operation.api_token_id = api_token_id
    operation.save()
    return arm(operation, client_channel)


def arm(operation: Operation, client_channel: str) -> NewOperation:
    """Give the operation its connection key, valid from now on."""
    key = secrets.token_urlsafe(24)
    operation.connection_key_hash = hash_token(key)
    operation.key_expires_at = timezone.now() + key_ttl()
    operation.client_channel = client_channel
    operation.worker = worker.name
    fields = ["connection_key_hash", "key_expires_at", "client_channel", "worker", "updated"]
    device = Device.objects.get(pk=operation.device_id)
    if not device.is_online or not device.control_channel:
        operation.status = Status.FAILED
        operation.failure_reason = "device is offline"
        operation.ended = timezone.now()
        fields += ["status", "failure_reason", "ended"]
    operation.save(update_fields=fields)
    return NewOperation(operation, key)


def start_browser_session(endpoint: Endpoint, user: object, client_address: str | None) -> tuple[Operation, str]:
    """A PENDING operation and the launch token that lets its page connect, once."""
    token = secrets.token_urlsafe(24)
    operation = Operation.for_endpoint(endpoint, user, client_address)
    operation.launch_token_hash = hash_token(token)
    operation.launch_expires_at = timezone.now() + LAUNCH_TTL
    operation.save()
    return operation, token


def claim_launch(operation_id: int, user: object, token: str) -> Operation | str:
    """The operation, if this is its user's first use of a valid launch token;
    otherwise the reason, in words for the page."""
    now = timezone.now()
    claimed = Operation.objects.filter(
        pk=operation_id, user=user, launch_token_hash=hash_token(token), launch_expires_at__gt=now,
        status=Status.PENDING,
    ).update(launch_token_hash="", updated=now)
    if claimed:
        return Operation.objects.select_related("endpoint", "device").get(pk=operation_id)
    return "this session link was already used or has expired: connect again from the device's page"


def expire_unlaunched(device_id: int) -> None:
    """Fail the operations whose page never connected."""
    Operation.objects.filter(
        device_id=device_id, status=Status.PENDING, client_channel="", launch_expires_at__lt=timezone.now()
    ).update(status=Status.FAILED, failure_reason="the session page was not opened in time",
             ended=timezone.now(), launch_token_hash="")


def fail_session(operation_id: int, reason: str) -> None:
    """A failure found after the tunnel was up (e.g. refused credentials)."""
    now = timezone.now()
    Operation.objects.filter(pk=operation_id).exclude(status=Status.FAILED).update(
        status=Status.FAILED, failure_reason=reason, updated=now
    )


def control_channel_of(device_id: int) -> str:
    return Device.objects.filter(pk=device_id, is_online=True).values_list("control_channel", flat=True).first() or ""


def fail_unless_connected(operation_id: int, reason: str) -> bool:
    """FAILED with `reason` if no tunnel has joined; False if one has."""
    changed = Operation.objects.filter(pk=operation_id, status__in=OPEN, tunnel_connected_at__isnull=True).update(
        status=Status.FAILED, failure_reason=reason, ended=timezone.now(), updated=timezone.now()
    )
    return bool(changed)


def end(operation_id: int, *, to_device: int = 0, from_device: int = 0, reason: str = "",
        final: bool = False) -> None:
    """Record the end of the session. The first side to end sets the time and
    the reason, but a `final` reason replaces any other: it is what the user
    was shown (the device side only knows that its tunnel closed)."""
    now = timezone.now()
    reason_value = Value(reason[:300])
    for attempt in range(1, END_ATTEMPTS + 1):
        try:
            Operation.objects.filter(pk=operation_id).update(
                ended=Coalesce(F("ended"), now),
                end_reason=reason_value if final else Case(When(end_reason="", then=reason_value),
                                                           default=F("end_reason")),
                bytes_to_device=F("bytes_to_device") + to_device,
                bytes_from_device=F("bytes_from_device") + from_device,
                updated=now,
            )
            return
        except OperationalError as exc:
            if attempt == END_ATTEMPTS:
                raise
            log.warning("operation %s: recording its end failed (%s), trying again", operation_id, exc)


@dataclass
class TunnelClaim:
    operation: Operation | None
    reason: str = ""


def claim_tunnel(device: Device, connection_key: str) -> TunnelClaim:
    """Use the key once: it must be this device's, unused and unexpired."""
    key_hash = hash_token(connection_key)
    operation = Operation.objects.filter(connection_key_hash=key_hash).first()
    if operation is None or not hmac.compare_digest(operation.connection_key_hash, key_hash):
        return TunnelClaim(None, "unknown connection key")
    if operation.device_id != device.pk:
        return TunnelClaim(None, "connection key of another device")
    now = timezone.now()
    # SUCCESSFUL too: an agent may report success before its tunnel arrives.
    claimed = Operation.objects.filter(
        pk=operation.pk, tunnel_connected_at__isnull=True, key_expires_at__gt=now,
        status__in=[*OPEN, Status.SUCCESSFUL],
    ).update(status=Status.SUCCESSFUL, tunnel_connected_at=now, updated=now)
    if not claimed:
        operation.refresh_from_db()
        if operation.tunnel_connected_at is not None:
            return TunnelClaim(None, "connection key already used")
        if operation.status == Status.FAILED:
            return TunnelClaim(None, f"operation failed: {operation.failure_reason}")
        return TunnelClaim(None, "connection key expired")
    operation.refresh_from_db()
    return TunnelClaim(operation)


@dataclass
class Report:
    """The outcome of one line from the device: an error to send back, or the
    operation that failed (whose client side must hear of it)."""

    error: str = ""
    failed: Operation | None = None


def apply_report(device: Device, line: str) -> Report:
    try:
        fields = smartrest.parse(line)
    except smartrest.BadLine as exc:
        return Report(error=str(exc))
    code, args = fields[0], fields[1:]
    handlers = {
        "501": (_by_fragment, Status.EXECUTING),
        "503": (_by_fragment, Status.SUCCESSFUL),
        "502": (_by_fragment, Status.FAILED),
        "504": (_by_id, Status.EXECUTING),
        "506": (_by_id, Status.SUCCESSFUL),
        "505": (_by_id, Status.FAILED),
    }
    if code not in handlers:
        return Report(error=f"unknown message {code[:16]!r}")
    handler, target = handlers[code]
    allowed_counts = (1, 2) if target == Status.FAILED else (1,)
    if len(args) not in allowed_counts:
        wanted = "1 or 2 fields" if target == Status.FAILED else "1 field"
        return Report(error=f"{code} takes {wanted} after the code, got {len(args)}")
    reason = (args[1] if len(args) > 1 else "") or "the device reported a failure"
    return handler(device, args[0], target, reason[:1000])


def _by_fragment(device: Device, fragment: str, target: Status, reason: str) -> Report:
    if fragment != smartrest.CONNECT:
        return Report(error=f"unknown operation fragment {fragment[:64]!r}")
    operations = Operation.objects.filter(device=device).order_by("created", "pk")
    if target == Status.EXECUTING:
        candidate = operations.filter(status=Status.PENDING).first()
    elif target == Status.SUCCESSFUL:
        candidate = (operations.filter(status=Status.EXECUTING).first()
                     or operations.filter(status=Status.SUCCESSFUL, device_confirmed=False).first())
    else:
        candidate = (operations.filter(status=Status.EXECUTING).first()
                     or operations.filter(status=Status.SUCCESSFUL, device_confirmed=False).first()
                     or operations.filter(status=Status.PENDING).first())
    if candidate is None:
        return Report(error=f"no {smartrest.CONNECT} operation to move to {target}")
    return _move(candidate, target, reason)


def _by_id(device: Device, operation_id: str, target: Status, reason: str) -> Report:
    if not operation_id.isdigit() or len(operation_id) > 18:
        return Report(error=f"unknown operation {operation_id[:32]!r}")
    candidate = Operation.objects.filter(pk=int(operation_id), device=device).first()
    if candidate is None:
        return Report(error=f"unknown operation {operation_id}")
    return _move(candidate, target, reason)


# Which statuses each report may move from.
ALLOWED = {
    Status.EXECUTING: [Status.PENDING],
    Status.SUCCESSFUL: [Status.EXECUTING],
    Status.FAILED: [Status.PENDING, Status.EXECUTING, Status.SUCCESSFUL],
}


def _move(operation: Operation, target: Status, reason: str) -> Report:
    now = timezone.now()
    rows = Operation.objects.filter(pk=operation.pk)
    if target == Status.SUCCESSFUL and operation.status == Status.SUCCESSFUL:
        # The tunnel got there first: the report is welcome and changes nothing.
        rows.update(device_confirmed=True)
        return Report()
    if target == Status.FAILED:
        changed = rows.filter(status__in=ALLOWED[target]).update(
            status=Status.FAILED, failure_reason=reason, device_confirmed=True, updated=now,
            ended=Coalesce(F("ended"), now) if operation.tunnel_connected_at is None else F("ended"),
        )
    else:
        extra = {"device_confirmed": True} if target == Status.SUCCESSFUL else {}
        changed = rows.filter(status__in=ALLOWED[target]).update(status=target, updated=now, **extra)
    if not changed:
        operation.refresh_from_db()
        return Report(error=f"operation {operation.pk} is {operation.status}: cannot move to {target}")
    if target == Status.FAILED:
        operation.refresh_from_db()
        return Report(failed=operation)
    return Report()


def device_online(device: Device, channel: str) -> str:
    """Mark the device online on this channel; the channel it replaces, if any."""
    previous = Device.objects.filter(pk=device.pk).values_list("control_channel", flat=True).first() or ""
    now = timezone.now()
    Device.objects.filter(pk=device.pk).update(is_online=True, control_channel=channel, last_seen=now)
    return previous if previous != channel else ""


def device_seen(device_id: int) -> None:
    Device.objects.filter(pk=device_id).update(last_seen=timezone.now())


def device_offline(device_id: int, channel: str) -> None:
    """Offline, unless a newer control channel has taken over."""
    Device.objects.filter(pk=device_id, control_channel=channel).update(
        is_online=False, control_channel="", last_seen=timezone.now()
    )


def waiting_clients(device_id: int) -> list[str]:
    """Client channels of this device's operations still waiting for a tunnel."""
    return list(
        Operation.objects.filter(
            device_id=device_id, status__in=OPEN, tunnel_connected_at__isnull=True,
            key_expires_at__gt=timezone.now(),
        ).exclude(client_channel="").values_list("client_channel", flat=True)
    )


def device_confirmed(operation_id: int) -> bool:
    """Has the device reported on the operation (success or failure)?"""
    return Operation.objects.filter(pk=operation_id, device_confirmed=True).exists()

