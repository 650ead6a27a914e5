"""What every JSON API view shares: who is calling, and errors as JSON."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from portal.auth import LOGIN_COOKIE, user_for_authorization, user_for_cookie
from portal.throttle import LockedOut

View = Callable[..., HttpResponse]


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def api_view(view: View) -> View:
    """Authenticate an API call: `Authorization` (Basic or Bearer), or the
    browser's session cookie, which must then carry its CSRF token on writes."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        header = request.headers.get("Authorization", "")
        login_cookie = request.COOKIES.get(LOGIN_COOKIE, "")
        if header or login_cookie:
            if header:
                try:
                    user = user_for_authorization(header, request.META.get("REMOTE_ADDR"))
                except LockedOut as exc:
                    return error(429, str(exc))
            else:
                # The XSRF header proves the request comes from the cookie's own client.
                user = user_for_cookie(login_cookie, request.headers.get("X-XSRF-TOKEN", ""))
            if user is None:
                response = error(401, "the credentials were refused")
                response.headers["WWW-Authenticate"] = 'Basic realm="remote access"'
                return response
            request.user = user
        elif not request.user.is_authenticated:
            return error(401, "authentication required: log in, or send an Authorization header")
        else:
            refused = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, view, args, kwargs)
            if refused is not None:
                return error(403, "CSRF check failed: send the X-CSRFToken header with the session cookie")
        try:
            return view(request, *args, **kwargs)
        except Http404 as exc:
            return error(404, str(exc) or "not found")
        except PermissionDenied as exc:
            return error(403, str(exc) or "not allowed")

    return wrapper
