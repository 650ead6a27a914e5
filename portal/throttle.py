"""Brute-force protection for password logins, registration one-time
passwords and API tokens: after repeated failures a user name, a device id
or a client address is locked for a while, whatever is presented, and the
message says how long.

Counts live in Django's cache: per process in the embedded mode, in Redis
when the workers share one (REDIS_URL).
"""

import math
import time
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.http import HttpRequest

@dataclass(frozen=True)
class Limit:
    """After max_failures within window seconds, a key is locked for lockout
    seconds, whatever is presented."""

    name: str
    # Completes "too many …": what failed, and for whom.
    what: str
    max_failures: int = 5
    window: int = 15 * 60
    lockout: int = 5 * 60


LOGIN = Limit("login", "failed logins for this user")
# Administrators may choose a device's one-time password, so it may be weak.
REGISTRATION = Limit("registration", "wrong one-time passwords for this device")
# Tokens are 256-bit random, but nobody may try them by the million.
API_TOKEN = Limit("api-token", "unknown API tokens from this address", max_failures=20)


class LockedOut(Exception):
    def __init__(self, limit: Limit, seconds: float) -> None:
        minutes = max(1, math.ceil(seconds / 60))
        super().__init__(f"too many {limit.what}: try again in {minutes} minute{'s' if minutes > 1 else ''}")
        self.seconds = seconds


def _keys(limit: Limit, key: str) -> tuple[str, str]:
    name = key.strip().lower()
    return f"{limit.name}-failures:{name}", f"{limit.name}-locked:{name}"


def check(limit: Limit, key: str) -> None:
    """Raise LockedOut while the key is locked."""
    _, locked_key = _keys(limit, key)
    until = cache.get(locked_key)
    if until is not None and until > time.time():
        raise LockedOut(limit, until - time.time())


def record_failure(limit: Limit, key: str) -> None:
    failures_key, locked_key = _keys(limit, key)
    failures = cache.get(failures_key, 0) + 1
    cache.set(failures_key, failures, limit.window)
    if failures >= limit.max_failures:
        cache.set(locked_key, time.time() + limit.lockout, limit.lockout)
        cache.delete(failures_key)


def clear(limit: Limit, key: str) -> None:
    """A success forgets the earlier failures."""
    cache.delete(_keys(limit, key)[0])


def authenticate_password(request: HttpRequest | None, username: str, password: str) -> AbstractBaseUser | None:
    """Django's authenticate, refusing locked user names (LockedOut) and
    counting failures."""
    check(LOGIN, username)
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        record_failure(LOGIN, username)
        return None
    clear(LOGIN, username)
    return user
