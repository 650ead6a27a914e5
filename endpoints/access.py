"""Who may see and change which device: one helper for views, APIs and consumers.

READ lets a user see a device's endpoints and connect; ADMIN also lets them
add, edit and remove endpoints, and implies READ. Either may be granted on
the device, on its device group, or model-wide (all devices).
"""

from enum import Enum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404
from guardian.shortcuts import get_objects_for_user

from endpoints.models import Device, DeviceGroup, Endpoint

User = AbstractBaseUser | AnonymousUser


class Level(Enum):
    READ = "read"
    ADMIN = "admin"

    @property
    def codenames(self) -> list[str]:
        if self is Level.READ:
            return ["remote_access_read", "remote_access_admin"]
        return ["remote_access_admin"]


def _perms(level: Level) -> list[str]:
    return [f"endpoints.{codename}" for codename in level.codenames]


def devices_for(user: User, level: Level = Level.READ) -> QuerySet[Device]:
    """The devices this user holds `level` on. This runs a query."""
    if not user.is_authenticated or not user.is_active:
        return Device.objects.none()
    perms = _perms(level)
    if user.is_superuser or any(user.has_perm(perm) for perm in perms):
        return Device.objects.all()
    # Bare codenames: with the app label guardian cannot tell the device's
    # permission from the device group's of the same name.
    codenames = level.codenames
    direct = get_objects_for_user(user, codenames, klass=Device, any_perm=True, accept_global_perms=False)
    groups = get_objects_for_user(
        user, codenames, klass=DeviceGroup, any_perm=True, accept_global_perms=False
    )
    return Device.objects.filter(Q(pk__in=direct.values("pk")) | Q(group__in=groups)).distinct()


def has_access(user: User, device: Device, level: Level = Level.READ) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    for perm in _perms(level):
        if user.has_perm(perm) or user.has_perm(perm, device):
            return True
        if device.group_id and user.has_perm(perm, device.group):
            return True
    return False


def get_device(user: User, device_id: int | str, level: Level = Level.READ) -> Device:
    """The device, or Http404 without READ (its existence stays hidden), or
    PermissionDenied (403) with READ but not the level asked for."""
    try:
        device = Device.objects.select_related("group").get(pk=int(device_id))
    except (Device.DoesNotExist, ValueError, TypeError):
        raise Http404("No such device.") from None
    if not has_access(user, device, Level.READ):
        raise Http404("No such device.")
    if level is Level.ADMIN and not has_access(user, device, Level.ADMIN):
        raise PermissionDenied("You need ADMIN on this device to change its endpoints.")
    return device


def get_endpoint(user: User, device_id: int | str, endpoint_id: int | str, level: Level = Level.READ) -> Endpoint:
    device = get_device(user, device_id, level)
    try:
        return device.endpoints.get(pk=int(endpoint_id))
    except (Endpoint.DoesNotExist, ValueError, TypeError):
        raise Http404("No such endpoint.") from None
