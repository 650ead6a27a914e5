"""Taking a device's credentials away, effective at once."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from endpoints.models import Device

# The control channel's consumer closes on this message.
REVOKED = "control.revoked"


def revoke_device_credentials(device: Device) -> None:
    """The device must register again; its live control channel is closed now,
    not at its next reconnect."""
    channel = device.control_channel
    device.token_hash = ""
    device.registered_at = None
    device.save(update_fields=["token_hash", "registered_at"])
    if channel:
        async_to_sync(get_channel_layer().send)(channel, {"type": REVOKED})
