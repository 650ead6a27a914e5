"""Revoking an API token, or deactivating or deleting a user, ends the
sessions opened with it at once, on whichever worker holds them (through
the channel layer)."""

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import QuerySet
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver

from portal.models import ApiToken
from sessions.models import Operation

# The client side of a session (client_side.ClientSession) ends on this message.
REVOKED = "session.revoked"
# The WebSocket close code its client gets, as a device's control channel does.
CLOSE_CODE = 4401
REASON = "API token revoked"


def live_channels(operations: "QuerySet[Operation]") -> list[str]:
    return list(operations.filter(ended__isnull=True).exclude(client_channel="")
                .values_list("client_channel", flat=True))


def end_sessions(channels: list[str], reason: str) -> int:
    send = async_to_sync(get_channel_layer().send)
    for channel in channels:
        send(channel, {"type": REVOKED, "reason": reason})
    return len(channels)


def revoke_api_token(token: ApiToken) -> int:
    """Delete the token and end its live sessions; how many there were."""
    channels = live_channels(Operation.objects.filter(api_token=token))
    token.delete()
    return end_sessions(channels, REASON)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def user_deactivated(sender: Any, instance: Any, **kwargs: Any) -> None:
    if not instance.is_active:
        end_sessions(live_channels(Operation.objects.filter(user=instance)), "user deactivated")


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL)
def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    end_sessions(live_channels(Operation.objects.filter(user=instance)), "user deleted")
