"""The part of Cumulocity's core API that its remote-access clients (c8ylp)
use, read-only and derived from our own data: login options, the form login
that issues a login token, the tenant, the current user with roles, and a
device looked up by serial with its remote access configurations."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from endpoints.access import Level, devices_for, get_device
from endpoints.configurations_api import as_json
from endpoints.models import Device
from portal import login_tokens
from portal.api import api_view
from portal.auth import LOGIN_COOKIE, XSRF_COOKIE
from portal.throttle import LockedOut, authenticate_password


def message(status: int, text: str, error: str) -> JsonResponse:
    """An error in Cumulocity's shape, which its clients print."""
    return JsonResponse({"error": error, "message": text}, status=status)


@require_GET
def login_options(request: HttpRequest) -> JsonResponse:
    init = request.build_absolute_uri(f"/tenant/oauth?tenant_id={settings.TENANT_ID}")
    return JsonResponse({"loginOptions": [
        {"id": "oauth2-internal", "type": "OAUTH2_INTERNAL", "grantType": "PASSWORD", "initRequest": init,
         "userManagementSource": "INTERNAL", "visibleOnLoginPage": True},
        {"id": "basic", "type": "BASIC", "userManagementSource": "INTERNAL", "visibleOnLoginPage": False},
    ]})


# A form login from a command-line client: it has no CSRF cookie, and the
# password is what it proves.
@csrf_exempt
@require_POST
def oauth(request: HttpRequest) -> HttpResponse:
    if request.POST.get("grant_type", "PASSWORD").upper() != "PASSWORD":
        return message(400, "only grant_type=PASSWORD is supported", "security/Unsupported")
    username = request.POST.get("username", "").rpartition("/")[2]
    try:
        user = authenticate_password(request, username, request.POST.get("password", ""))
    except LockedOut as exc:
        return message(429, str(exc), "security/Too many requests")
    if user is None:
        return message(401, "Invalid credentials!", "security/Unauthorized")
    token, xsrf = login_tokens.issue(user)
    response = JsonResponse({})
    secure = request.is_secure()
    response.set_cookie(LOGIN_COOKIE, token, max_age=login_tokens.LOGIN_TOKEN_TTL, httponly=True, secure=secure,
                        samesite="Lax")
    response.set_cookie(XSRF_COOKIE, xsrf, max_age=login_tokens.LOGIN_TOKEN_TTL, secure=secure, samesite="Lax")
    return response


@api_view
@require_GET
def current_tenant(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"name": settings.TENANT_ID, "domainName": request.get_host()})


@api_view
@require_GET
def current_user(request: HttpRequest) -> JsonResponse:
    roles = []
    if devices_for(request.user, Level.READ).exists():
        roles.append({"id": "ROLE_REMOTE_ACCESS_READ"})
    if devices_for(request.user, Level.ADMIN).exists():
        roles.append({"id": "ROLE_REMOTE_ACCESS_ADMIN"})
    name = request.user.get_username()
    return JsonResponse({"id": name, "userName": name, "effectiveRoles": roles})


def _device_by_serial(user: Any, serial: str) -> Device | None:
    return devices_for(user).filter(serial=serial).first()


@api_view
@require_GET
def external_id(request: HttpRequest, id_type: str, serial: str) -> JsonResponse:
    device = _device_by_serial(request.user, serial) if id_type == "c8y_Serial" else None
    if device is None:
        return message(404, f"External ID not found; {id_type} {serial}", "identity/Not Found")
    managed_object = {"id": str(device.pk), "self": request.build_absolute_uri(f"/inventory/managedObjects/{device.pk}")}
    return JsonResponse({"externalId": device.serial, "type": id_type, "managedObject": managed_object})


@api_view
@require_GET
def managed_object(request: HttpRequest, device_id: str) -> JsonResponse:
    device = get_device(request.user, device_id)
    return JsonResponse({
        "id": str(device.pk),
        "name": device.name,
        "c8y_IsDevice": {},
        "c8y_SupportedOperations": device.supported_operations or [],
        "c8y_RemoteAccessList": [as_json(endpoint) for endpoint in device.endpoints.all()],
    })
