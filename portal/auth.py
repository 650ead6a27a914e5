"""Users on API and command-line endpoints: `Authorization: Basic` with the
user's password (a `<tenant>/` prefix is ignored), `Bearer` with an API
token or a login token, or the `authorization` cookie with its XSRF token."""

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from endpoints.device_auth import parse_basic
from endpoints.models import hash_token
from portal import login_tokens
from portal import throttle
from portal.throttle import authenticate_password
from portal.models import TOKEN_PREFIX, ApiToken

# Cumulocity's cookie names: the login token, and the value a client echoes
# in the X-XSRF-TOKEN header.
LOGIN_COOKIE = "authorization"
XSRF_COOKIE = "XSRF-TOKEN"


def api_token_for(token: str, client: str | None) -> ApiToken | None:
    """The API token, if it exists and its user is active; marks it used.
    Unknown tokens count against the client's address: after too many it is
    locked out (LockedOut), whatever it presents."""
    throttle.check(throttle.API_TOKEN, client or "")
    api_token = ApiToken.objects.select_related("user").filter(token_hash=hash_token(token)).first()
    if api_token is None or not api_token.user.is_active:
        throttle.record_failure(throttle.API_TOKEN, client or "")
        return None
    ApiToken.objects.filter(pk=api_token.pk).update(last_used=timezone.now())
    return api_token


def presented_api_token(authorization: str) -> str:
    """The API token in an `Authorization: Bearer` header, if it holds one."""
    scheme, _, credentials = authorization.strip().partition(" ")
    token = credentials.strip()
    return token if scheme.lower() == "bearer" and token.startswith(TOKEN_PREFIX) else ""


def user_for_authorization(header: str, client: str | None) -> AbstractBaseUser | None:
    """The user these credentials belong to, or None. This runs a query, and
    for passwords a deliberately slow hash; a locked user name or client
    address raises LockedOut."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() == "basic":
        parsed = parse_basic(credentials)
        if parsed is None:
            return None
        return authenticate_password(None, parsed[0], parsed[1])
    if scheme.lower() == "bearer" and credentials.strip():
        token = credentials.strip()
        if token.startswith(TOKEN_PREFIX):
            api_token = api_token_for(token, client)
            return api_token.user if api_token is not None else None
        return login_tokens.user_for(token)
    return None


def user_for_cookie(token: str, xsrf: str) -> AbstractBaseUser | None:
    """The user of a login token sent as the `authorization` cookie; the
    request must carry the XSRF token bound to it."""
    if not token or not xsrf:
        return None
    return login_tokens.user_for(token, xsrf)
