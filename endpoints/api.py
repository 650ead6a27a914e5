"""JSON endpoints under /service/remoteaccess/ for devices and API clients."""

import json
import logging

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from endpoints.models import Device
from portal import throttle
from portal.api import error

log = logging.getLogger(__name__)

REGISTRATION_REFUSED = "the device id or one-time password is wrong, used or expired"


# Devices hold no session or CSRF cookie; the one-time password is the proof.
@csrf_exempt
@require_POST
def registration(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, "the body must be JSON: {\"deviceId\": …, \"oneTimePassword\": …}")
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    serial, otp = body.get("deviceId"), body.get("oneTimePassword")
    if not isinstance(serial, str) or not serial or not isinstance(otp, str) or not otp:
        return error(400, "deviceId and oneTimePassword are required strings")
    try:
        throttle.check(throttle.REGISTRATION, serial)
    except throttle.LockedOut as exc:
        log.warning("registration of device id %r refused: locked after wrong one-time passwords", serial[:128])
        return error(429, str(exc))
    with transaction.atomic():
        device = Device.objects.select_for_update().filter(serial=serial).first()
        if device is None or not device.one_time_password_matches(otp):
            log.warning("registration refused for device id %r", serial[:128])
            throttle.record_failure(throttle.REGISTRATION, serial)
            return error(401, REGISTRATION_REFUSED)
        token = device.issue_token()
        device.save(update_fields=["token_hash", "otp_hash", "otp_expires_at", "registered_at"])
    throttle.clear(throttle.REGISTRATION, serial)
    log.info("device %s registered", device.serial)
    return JsonResponse({"username": device.username, "password": token})
