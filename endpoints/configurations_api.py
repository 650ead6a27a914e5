"""The remote access configurations API (Cumulocity-compatible).

`/service/remoteaccess/devices/<deviceId>/configurations[/<configId>]`:
a device's endpoints as JSON. Writes take the flat shape and are validated by
the same form as the pages, so they give the same messages. Secrets are
write-only: no response holds a password or a private key.
"""

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods

from endpoints import keys
from endpoints.access import Level, get_device, get_endpoint
from endpoints.forms import EndpointForm
from endpoints.models import CredentialsType, Endpoint, Protocol
from portal.api import api_view, error

# The flat write shape and the form fields it fills.
WRITE_FIELDS = {
    "name": "name",
    "hostname": "hostname",
    "port": "port",
    "credentialsType": "credentials_type",
    "username": "username",
    "password": "password",
    "privateKey": "private_key",
    "publicKey": "public_key",
    "hostKey": "host_key",
}


class BadRequest(Exception):
    """A body the API cannot take; the text says why."""


def as_json(endpoint: Endpoint) -> dict[str, Any]:
    credentials = {
        "type": endpoint.credentials_type,
        "username": endpoint.username,
        "publicKey": endpoint.public_key,
        "hostKey": endpoint.host_key,
    }
    return {
        "id": str(endpoint.pk),
        "name": endpoint.name,
        "hostname": endpoint.hostname,
        "port": endpoint.port,
        "protocol": endpoint.protocol,
        "credentialsType": endpoint.credentials_type,
        "credentials": credentials,
    }


def read_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    for key, value in body.items():
        if key == "port":
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise BadRequest("port must be a number from 1 to 65535")
        elif key in WRITE_FIELDS or key == "protocol":
            if value is not None and not isinstance(value, str):
                raise BadRequest(f"{key} must be a string")
    return body


def save(endpoint: Endpoint, body: dict[str, Any]) -> HttpResponse:
    """Validate with the endpoint form, as the pages do; 400 with its messages."""
    data = {}
    if endpoint.pk is not None:
        data = {"name": endpoint.name, "hostname": endpoint.hostname, "port": endpoint.port,
                "credentials_type": endpoint.credentials_type, "username": endpoint.username,
                "public_key": endpoint.public_key, "host_key": endpoint.host_key}
    for key, field in WRITE_FIELDS.items():
        if key in body:
            data[field] = "" if body[key] is None else body[key]
    if endpoint.protocol == Protocol.SSH and data.get("credentials_type") in (None, "", CredentialsType.NONE):
        data["credentials_type"] = CredentialsType.KEY_PAIR if data.get("private_key") else CredentialsType.USER_PASS
    form = EndpointForm(data, instance=endpoint)
    if not form.is_valid():
        fields = {
            _api_name(name): [str(message) for message in messages] for name, messages in form.errors.items()
        }
        first = next(iter(fields.items()))
        return JsonResponse({"error": f"{first[0]}: {first[1][0]}", "fields": fields}, status=400)
    status = 201 if endpoint.pk is None else 200
    return JsonResponse(as_json(form.save()), status=status)


def _api_name(field: str) -> str:
    names = {form_field: api for api, form_field in WRITE_FIELDS.items()}
    return names.get(field, field)


def _protocol(value: Any) -> Protocol:
    try:
        return Protocol(str(value).upper())
    except ValueError:
        choices = ", ".join(Protocol.values)
        raise BadRequest(f"protocol must be one of {choices}") from None


@api_view
@require_http_methods(["GET", "POST"])
def configurations(request: HttpRequest, device_id: str) -> HttpResponse:
    if request.method == "GET":
        device = get_device(request.user, device_id)
        return JsonResponse([as_json(endpoint) for endpoint in device.endpoints.all()], safe=False)
    device = get_device(request.user, device_id, Level.ADMIN)
    try:
        body = read_body(request)
        protocol = _protocol(body.get("protocol"))
    except BadRequest as exc:
        return error(400, str(exc))
    return save(Endpoint(device=device, protocol=protocol), body)


@api_view
@require_http_methods(["GET", "PUT", "DELETE"])
def configuration(request: HttpRequest, device_id: str, endpoint_id: str) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse(as_json(get_endpoint(request.user, device_id, endpoint_id)))
    endpoint = get_endpoint(request.user, device_id, endpoint_id, Level.ADMIN)
    if request.method == "DELETE":
        endpoint.delete()
        return HttpResponse(status=204)
    try:
        body = read_body(request)
        if body.get("protocol"):
            endpoint.protocol = _protocol(body["protocol"])
    except BadRequest as exc:
        return error(400, str(exc))
    return save(endpoint, body)


@api_view
@require_http_methods(["POST"])
def generate_key_pair(request: HttpRequest) -> HttpResponse:
    """A new Ed25519 key pair for the caller to store in a configuration."""
    pair = keys.generate_key_pair()
    return JsonResponse({"publicKey": pair.public_openssh, "privateKey": pair.openssh, "fingerprint": pair.fingerprint})


@require_http_methods(["GET", "HEAD"])
def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "UP"})
