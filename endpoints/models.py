import hashlib
import hmac
import secrets
from datetime import timedelta

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from endpoints import keys
from endpoints.fields import EncryptedTextField
from endpoints.validators import validate_hostname, validate_serial

REMOTE_ACCESS_CONNECT = "c8y_RemoteAccessConnect"
DEVICE_USERNAME_PREFIX = "device_"

# The same two codenames on devices and on device groups: a grant on a group
# applies to every device in it.
REMOTE_ACCESS_PERMISSIONS = [
    ("remote_access_read", "Can see endpoints and connect (READ)"),
    ("remote_access_admin", "Can add, edit and remove endpoints (ADMIN)"),
]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_supported_operations() -> list[str]:
    return [REMOTE_ACCESS_CONNECT]


class DeviceGroup(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        permissions = REMOTE_ACCESS_PERMISSIONS

    def __str__(self) -> str:
        return self.name


class Device(models.Model):
    serial = models.CharField(
        "serial (external id)", max_length=128, unique=True, validators=[validate_serial]
    )
    name = models.CharField(max_length=100)
    group = models.ForeignKey(
        DeviceGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    supported_operations = models.JSONField(default=default_supported_operations, blank=True)
    token_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    otp_hash = models.CharField(max_length=64, blank=True, editable=False)
    otp_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    registered_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_online = models.BooleanField("online", default=False, editable=False)
    last_seen = models.DateTimeField("agent last seen", null=True, blank=True, editable=False)
    # The channel of the device's one live control connection, if any.
    control_channel = models.CharField(max_length=200, blank=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "serial"]
        permissions = REMOTE_ACCESS_PERMISSIONS

    def __str__(self) -> str:
        return f"{self.name} ({self.serial})"

    @property
    def username(self) -> str:
        return DEVICE_USERNAME_PREFIX + self.serial

    @property
    def supports_remote_access(self) -> bool:
        return REMOTE_ACCESS_CONNECT in (self.supported_operations or [])

    @property
    def awaiting_agent(self) -> bool:
        return not self.token_hash

    def issue_one_time_password(self, ttl: timedelta, otp: str = "") -> str:
        """A fresh registration password; only its hash is kept."""
        otp = otp or secrets.token_urlsafe(18)
        self.otp_hash = hash_token(otp)
        self.otp_expires_at = timezone.now() + ttl
        return otp

    def one_time_password_matches(self, otp: str) -> bool:
        if not self.otp_hash or not self.otp_expires_at or self.otp_expires_at <= timezone.now():
            return False
        return hmac.compare_digest(self.otp_hash, hash_token(otp))

    def issue_token(self) -> str:
        """New device credentials: the token is shown once and kept hashed."""
        token = secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        self.otp_hash = ""
        self.otp_expires_at = None
        self.registered_at = timezone.now()
        return token

    def token_matches(self, token: str) -> bool:
        return bool(self.token_hash) and hmac.compare_digest(self.token_hash, hash_token(token))


class Protocol(models.TextChoices):
    SSH = "SSH", "SSH"
    TELNET = "TELNET", "Telnet"
    VNC = "VNC", "VNC"
    PASSTHROUGH = "PASSTHROUGH", "Passthrough"


class CredentialsType(models.TextChoices):
    NONE = "NONE", "None"
    PASS_ONLY = "PASS_ONLY", "Password only"
    USER_PASS = "USER_PASS", "User name and password"
    KEY_PAIR = "KEY_PAIR", "Key pair"


DEFAULT_PORTS = {Protocol.SSH: 22, Protocol.TELNET: 23, Protocol.VNC: 5900, Protocol.PASSTHROUGH: 22}


class Endpoint(models.Model):
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="endpoints")
    name = models.CharField(max_length=100)
    protocol = models.CharField(max_length=16, choices=Protocol.choices)
    hostname = models.CharField(max_length=255, validators=[validate_hostname])
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    credentials_type = models.CharField(
        max_length=16, choices=CredentialsType.choices, default=CredentialsType.NONE
    )
    username = models.CharField(max_length=255, blank=True)
    password = EncryptedTextField(blank=True)
    private_key = EncryptedTextField(blank=True)
    public_key = models.TextField(blank=True)
    host_key = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # Technicians pick an endpoint by name, in the UI and in
            # `remote-access-client --config NAME`; two alike would be ambiguous.
            models.UniqueConstraint(fields=["device", "name"], name="endpoint_name_unique_per_device"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_protocol_display()} {self.address})"

    @property
    def address(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname and not self.hostname.startswith("[") else self.hostname
        return f"{host}:{self.port}"

    @property
    def host_key_fingerprint(self) -> str:
        return keys.fingerprint(self.host_key)


class RemoteAccessSettings(models.Model):
    """Site-wide settings, one row, edited by staff."""

    auto_save_host_key = models.BooleanField(
        "auto-save host key",
        default=False,
        help_text="Save an SSH endpoint's host key on its first successful connection "
        "and refuse any other key after that.",
    )

    class Meta:
        verbose_name = "remote access settings"
        verbose_name_plural = "remote access settings"

    def __str__(self) -> str:
        return "Remote access settings"

    @classmethod
    def load(cls) -> "RemoteAccessSettings":
        settings, _ = cls.objects.get_or_create(pk=1)
        return settings
