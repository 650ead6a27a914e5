"""Revoking an API token ends the sessions opened with it at once, on
whichever worker holds them (through the channel layer)."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from portal.models import ApiToken
from sessions.models import Operation

# The client side of a session (client_side.ClientSession) ends on this message.
REVOKED = "session.revoked"
# The WebSocket close code its client gets, as a device's control channel does.
CLOSE_CODE = 4401
REASON = "API token revoked"


def revoke_api_token(token: ApiToken) -> int:
    """Delete the token and end its live sessions; how many there were."""
    channels = list(
        Operation.objects.filter(api_token=token, ended__isnull=True)
        .exclude(client_channel="")
        .values_list("client_channel", flat=True)
    )
    token.delete()
    send = async_to_sync(get_channel_layer().send)
    for channel in channels:
        send(channel, {"type": REVOKED, "reason": REASON})
    return len(channels)
