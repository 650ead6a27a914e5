from datetime import timedelta

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from endpoints import keys
from endpoints.models import (
    DEFAULT_PORTS,
    CredentialsType,
    Device,
    DeviceGroup,
    Endpoint,
    Protocol,
    RemoteAccessSettings,
)
from endpoints.validators import validate_serial

MAX_KEY_FILE = keys.MAX_KEY_TEXT
PORT_MESSAGE = "Enter a port from 1 to 65535."

# What each protocol asks for, as in Cumulocity's forms.
PROTOCOL_FIELDS = {
    Protocol.SSH: ["credentials_type", "username", "password", "private_key", "private_key_file",
                   "passphrase", "generate_key_pair", "public_key", "host_key"],
    Protocol.VNC: ["password"],
    Protocol.TELNET: [],
    Protocol.PASSTHROUGH: [],
}
SSH_CREDENTIALS = [
    (CredentialsType.USER_PASS.value, "User name and password"),
    (CredentialsType.KEY_PAIR.value, "Key pair"),
]


class EndpointForm(forms.ModelForm):
    """Add or edit one endpoint; the instance must carry its device and protocol.

    Stored secrets are never rendered back: a blank password or private key
    on edit keeps the stored one.
    """

    port = forms.IntegerField(
        min_value=1,
        max_value=65535,
        error_messages={"min_value": PORT_MESSAGE, "max_value": PORT_MESSAGE, "invalid": PORT_MESSAGE},
    )
    credentials_type = forms.ChoiceField(
        choices=SSH_CREDENTIALS, widget=forms.RadioSelect, initial=CredentialsType.USER_PASS.value
    )
    password = forms.CharField(
        required=False, strip=False, max_length=1024, widget=forms.PasswordInput(render_value=False)
    )
    private_key = forms.CharField(
        required=False,
        max_length=keys.MAX_KEY_TEXT,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text="OpenSSH, PEM (PKCS#1, PKCS#8) or SSH2; RSA, DSA, ECDSA or Ed25519.",
    )
    private_key_file = forms.FileField(required=False, label="or upload the private key file")
    passphrase = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Only to decrypt an encrypted key now; it is not stored.",
    )
    generate_key_pair = forms.BooleanField(
        required=False,
        label="Generate a new Ed25519 key pair",
        help_text="Replaces the stored key; copy the public key into the device's authorized_keys.",
    )
    public_key = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="Optional: derived from the private key when left empty.",
    )
    host_key = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="The server's public host key (e.g. the contents of "
        "/etc/ssh/ssh_host_ed25519_key.pub). Empty: not checked, or saved on first "
        "connection when auto-save is on.",
    )

    class Meta:
        model = Endpoint
        fields = ["name", "hostname", "port", "credentials_type", "username", "password",
                  "private_key", "public_key", "host_key"]
        labels = {"hostname": "Host", "username": "User name"}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.protocol = Protocol(self.instance.protocol)
        # Kept before validation copies the blank form fields onto the instance.
        self.instance_password = self.instance.password
        self.instance_private_key = self.instance.private_key
        wanted = {"name", "hostname", "port", *PROTOCOL_FIELDS[self.protocol]}
        for name in list(self.fields):
            if name not in wanted:
                del self.fields[name]
        if self.instance.pk is None:
            self.initial["port"] = DEFAULT_PORTS[self.protocol]
            if self.protocol is Protocol.SSH:
                self.initial["credentials_type"] = CredentialsType.USER_PASS.value
        if "private_key" in self.fields:
            self.initial["private_key"] = ""
        if "password" in self.fields and self.instance.password:
            self.fields["password"].help_text = "A password is stored; leave empty to keep it."
        if "private_key" in self.fields and self.instance.private_key:
            self.fields["private_key"].help_text = "A private key is stored; leave empty to keep it."
        if self.protocol is Protocol.VNC:
            self.fields["password"].help_text = (
                self.fields["password"].help_text or "The VNC password; empty for none."
            )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        others = Endpoint.objects.filter(device=self.instance.device, name=name)
        if self.instance.pk:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise ValidationError("This device already has an endpoint with this name.")
        return name

    def clean_hostname(self) -> str:
        return self.cleaned_data["hostname"].strip()

    def clean_private_key_file(self) -> str:
        upload = self.cleaned_data.get("private_key_file")
        if not upload:
            return ""
        if upload.size > MAX_KEY_FILE:
            raise ValidationError(f"The key file is too large (at most {MAX_KEY_FILE // 1024} KiB).")
        try:
            return upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("The file is not a text key file.") from None

    def clean_host_key(self) -> str:
        text = self.cleaned_data.get("host_key", "").strip()
        if not text:
            return ""
        try:
            return keys.read_host_key(text)
        except keys.InvalidKey as exc:
            raise ValidationError(f"The host key is not usable: {exc}.") from None

    def clean(self) -> dict:
        data = super().clean()
        if self.protocol is Protocol.SSH:
            self.credentials_type = data.get("credentials_type", CredentialsType.USER_PASS)
            self._clean_ssh(data)
        elif self.protocol is Protocol.VNC:
            password = data.get("password") or self.instance_password
            self.credentials_type = CredentialsType.PASS_ONLY if password else CredentialsType.NONE
        else:
            self.credentials_type = CredentialsType.NONE
        return data

    def _clean_ssh(self, data: dict) -> None:
        if not data.get("username", "").strip():
            self.add_error("username", "Enter the user name to log in as.")
        if data.get("credentials_type") == CredentialsType.USER_PASS:
            if not data.get("password") and not self.instance_password:
                self.add_error("password", "Enter the password.")
            return
        text = data.get("private_key_file") or data.get("private_key", "")
        kept = False
        if data.get("generate_key_pair"):
            pair = keys.generate_key_pair(comment=f"{self.instance.device.serial}-{data.get('name', '')}")
        elif text.strip():
            try:
                pair = keys.read_private_key(text, data.get("passphrase", ""))
            except keys.InvalidKey as exc:
                self.add_error("private_key", f"The private key is not usable: {exc}.")
                return
        elif self.instance_private_key:
            pair = keys.read_private_key(self.instance_private_key)
            kept = True
        else:
            if "private_key_file" not in self.errors:
                self.add_error("private_key", "Paste or upload a private key, or generate a key pair.")
            return
        public_text = data.get("public_key", "").strip()
        if public_text and not data.get("generate_key_pair"):
            try:
                public = keys.read_public_key(public_text)
            except keys.InvalidKey as exc:
                self.add_error("public_key", f"The public key is not usable: {exc}.")
                return
            if public.export_public_key("openssh").split()[:2] != pair.public_openssh.encode().split()[:2]:
                self.add_error("public_key", "The public key does not belong to the private key.")
                return
        if not kept:
            data["new_private_key"] = pair.openssh
        data["public_key"] = pair.public_openssh

    def save(self, commit: bool = True) -> Endpoint:
        endpoint: Endpoint = super().save(commit=False)
        data = self.cleaned_data
        endpoint.credentials_type = self.credentials_type
        if self.protocol is Protocol.SSH:
            if endpoint.credentials_type == CredentialsType.USER_PASS:
                endpoint.password = data.get("password") or self.instance_password
                endpoint.private_key = ""
                endpoint.public_key = ""
            else:
                endpoint.password = ""
                endpoint.private_key = data.get("new_private_key") or self.instance_private_key
                endpoint.public_key = data.get("public_key") or endpoint.public_key
        elif self.protocol is Protocol.VNC:
            endpoint.password = data.get("password") or self.instance_password
        if self.protocol is not Protocol.SSH:
            endpoint.username = ""
            endpoint.private_key = ""
            endpoint.public_key = ""
            endpoint.host_key = ""
            if self.protocol is not Protocol.VNC:
                endpoint.password = ""
        if commit:
            endpoint.save()
        return endpoint


class DeviceRegistrationForm(forms.Form):
    serial = forms.CharField(
        label="Serial (external id)", max_length=128, validators=[validate_serial],
        help_text="The device's unique id, as its agent will present it.",
    )
    name = forms.CharField(max_length=100, required=False, help_text="Defaults to the serial.")
    group = forms.ModelChoiceField(queryset=DeviceGroup.objects.all(), required=False)
    one_time_password = forms.CharField(
        max_length=32, min_length=8, required=False, strip=False,
        help_text="8 to 32 characters; generated when left empty.",
    )

    def clean_serial(self) -> str:
        serial = self.cleaned_data["serial"].strip()
        device = Device.objects.filter(serial=serial).first()
        if device and not device.awaiting_agent:
            raise ValidationError("A device with this serial is already registered.")
        return serial

    def save(self) -> tuple[Device, str]:
        """The device, created or updated, and its new one-time password."""
        data = self.cleaned_data
        with transaction.atomic():
            device, _ = Device.objects.get_or_create(
                serial=data["serial"], defaults={"name": data["name"] or data["serial"]}
            )
            device.name = data["name"] or device.name
            device.group = data["group"] or device.group
            ttl = timedelta(hours=settings.REMOTE_ACCESS_OTP_TTL_HOURS)
            otp = device.issue_one_time_password(ttl, data["one_time_password"])
            device.save()
        return device, otp


class RemoteAccessSettingsForm(forms.ModelForm):
    class Meta:
        model = RemoteAccessSettings
        fields = ["auto_save_host_key"]
