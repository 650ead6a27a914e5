from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from endpoints.access import get_device, get_endpoint
from sessions import operations
from sessions.models import Operation, Status

OPERATIONS_PER_PAGE = 50


@login_required
def control(request: HttpRequest, device_id: int) -> HttpResponse:
    device = get_device(request.user, device_id)
    operations = Operation.objects.filter(device=device).order_by("-created", "-pk")
    page = Paginator(operations, OPERATIONS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "sessions/control.html", {"device": device, "tab": "control", "page": page})


@login_required
@require_POST
def connect(request: HttpRequest, device_id: int, endpoint_id: int) -> HttpResponse:
    endpoint = get_endpoint(request.user, device_id, endpoint_id)
    new = operations.create(endpoint, request.user, request.META.get("REMOTE_ADDR"))
    operation = new.operation
    if operation.status != Status.FAILED:
        operations.fail_unless_connected(operation.pk, "sessions in the browser are not available yet")
        operation.refresh_from_db()
    messages.error(request, f"Cannot connect to “{endpoint.name}”: {operation.failure_reason}.")
    return redirect("control", device_id=endpoint.device.pk)
