from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from endpoints.access import get_device, get_endpoint, has_access
from endpoints.models import Protocol
from sessions import operations, refusals
from sessions.models import Operation

OPERATIONS_PER_PAGE = 50


@login_required
def control(request: HttpRequest, device_id: int) -> HttpResponse:
    device = get_device(request.user, device_id)
    operations.expire_unlaunched(device.pk)
    history = Operation.objects.filter(device=device).order_by("-created", "-pk")
    page = Paginator(history, OPERATIONS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "sessions/control.html", {"device": device, "tab": "control", "page": page})


@login_required
@require_POST
def connect(request: HttpRequest, device_id: int, endpoint_id: int) -> HttpResponse:
    address = request.META.get("REMOTE_ADDR")
    try:
        endpoint = get_endpoint(request.user, device_id, endpoint_id)
    except Http404:
        refusals.record_attempt(request.user, device_id, endpoint_id, address, "no such endpoint")
        raise
    operations.expire_unlaunched(endpoint.device_id)
    if endpoint.protocol == Protocol.PASSTHROUGH:
        refusals.record(endpoint, request.user, address, "a passthrough endpoint takes a local proxy")
        messages.error(request, f"“{endpoint.name}” is a passthrough endpoint: connect to it with a local proxy.")
        return redirect("remote-access", device_id=endpoint.device.pk)
    operation, launch = operations.start_browser_session(endpoint, request.user, address)
    return redirect(f"{reverse('session', args=[operation.pk])}?{urlencode({'launch': launch})}")


@login_required
def session(request: HttpRequest, operation_id: int) -> HttpResponse:
    """The page of one session; only its own user sees it."""
    operation = get_object_or_404(Operation.objects.select_related("device", "endpoint"), pk=operation_id,
                                  user=request.user)
    can_reconnect = operation.endpoint is not None and has_access(request.user, operation.device)
    context = {"operation": operation, "can_reconnect": can_reconnect, "scrollback": settings.TERMINAL_SCROLLBACK}
    template = "sessions/vnc.html" if operation.protocol == Protocol.VNC else "sessions/terminal.html"
    return render(request, template, context)
