"""Brute-force protection for password logins: after repeated failures a
user name is locked for a while, whatever the password, and the message
says how long.

Counts live in Django's cache: per process in the embedded mode; give
several workers a shared cache to share the counts.
"""

import math
import time

from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.http import HttpRequest

MAX_FAILURES = 5
FAILURE_WINDOW = 15 * 60
LOCKOUT = 5 * 60


class LockedOut(Exception):
    def __init__(self, seconds: float) -> None:
        minutes = max(1, math.ceil(seconds / 60))
        super().__init__(
            f"too many failed logins for this user: try again in {minutes} minute{'s' if minutes > 1 else ''}"
        )
        self.seconds = seconds


def _keys(username: str) -> tuple[str, str]:
    name = username.strip().lower()
    return f"login-failures:{name}", f"login-locked:{name}"


def check(username: str) -> None:
    """Raise LockedOut while the user name is locked."""
    _, locked_key = _keys(username)
    until = cache.get(locked_key)
    if until is not None and until > time.time():
        raise LockedOut(until - time.time())


def record_failure(username: str) -> None:
    failures_key, locked_key = _keys(username)
    failures = cache.get(failures_key, 0) + 1
    cache.set(failures_key, failures, FAILURE_WINDOW)
    if failures >= MAX_FAILURES:
        cache.set(locked_key, time.time() + LOCKOUT, LOCKOUT)
        cache.delete(failures_key)


def authenticate_password(request: HttpRequest | None, username: str, password: str) -> AbstractBaseUser | None:
    """Django's authenticate, refusing locked user names (LockedOut) and
    counting failures."""
    check(username)
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        record_failure(username)
        return None
    cache.delete(_keys(username)[0])
    return user
