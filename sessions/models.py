from django.conf import settings
from django.db import models
from django.utils import timezone

from endpoints.models import REMOTE_ACCESS_CONNECT, Device, Endpoint


class Status(models.TextChoices):
    PENDING = "PENDING", "Pending"
    EXECUTING = "EXECUTING", "Executing"
    SUCCESSFUL = "SUCCESSFUL", "Successful"
    FAILED = "FAILED", "Failed"


class Operation(models.Model):
    """The audit record of one connection attempt.

    The endpoint's name, protocol and address, the device's serial and the
    user's name are copied in, so the record still says what happened after
    any of them is changed or removed.
    """

    fragment = models.CharField(max_length=64, default=REMOTE_ACCESS_CONNECT, editable=False)
    device = models.ForeignKey(Device, null=True, on_delete=models.SET_NULL, related_name="operations")
    device_serial = models.CharField(max_length=128)
    endpoint = models.ForeignKey(
        Endpoint, null=True, on_delete=models.SET_NULL, related_name="operations"
    )
    endpoint_name = models.CharField(max_length=100)
    protocol = models.CharField(max_length=16)
    hostname = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="operations"
    )
    username = models.CharField(max_length=150)
    # The API token a local proxy authenticated with: revoking it ends the session.
    api_token = models.ForeignKey(
        "portal.ApiToken", null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="operations"
    )
    client_address = models.GenericIPAddressField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    updated = models.DateTimeField(auto_now=True)
    ended = models.DateTimeField(null=True, blank=True)
    # Why the session ended, in the words the user saw (see operations.end).
    end_reason = models.CharField(max_length=300, blank=True)
    bytes_to_device = models.BigIntegerField(default=0)
    bytes_from_device = models.BigIntegerField(default=0)
    # The connection key itself is only ever in memory and in the 530 line;
    # the database keeps its hash.
    connection_key_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    key_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    tunnel_connected_at = models.DateTimeField(null=True, blank=True, editable=False)
    device_confirmed = models.BooleanField(default=False, editable=False)
    # Where the session's client side listens, so a device tunnel or a status
    # report on any worker can reach it.
    client_channel = models.CharField(max_length=200, blank=True, editable=False)
    # The server process (host:port) that holds the client side.
    worker = models.CharField(max_length=200, blank=True, editable=False)
    # A browser session opens its page with a single-use launch token.
    launch_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    launch_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [models.Index(fields=["device", "status", "created"], name="operation_device_status")]

    def __str__(self) -> str:
        return f"Operation {self.pk}: {self.endpoint_name} on {self.device_serial} ({self.status})"

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint, user: models.Model, client_address: str | None) -> "Operation":
        """A new, unsaved record with the endpoint's details copied in."""
        return cls(
            device=endpoint.device,
            device_serial=endpoint.device.serial,
            endpoint=endpoint,
            endpoint_name=endpoint.name,
            protocol=endpoint.protocol,
            hostname=endpoint.hostname,
            port=endpoint.port,
            user=user,
            username=user.get_username(),
            client_address=client_address,
        )

    @property
    def total_bytes(self) -> int:
        return self.bytes_to_device + self.bytes_from_device
