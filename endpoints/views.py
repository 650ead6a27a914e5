from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from endpoints.access import Level, devices_for, get_device, get_endpoint, has_access
from endpoints.forms import DeviceRegistrationForm, EndpointForm, RemoteAccessSettingsForm
from endpoints.models import Device, Endpoint, Protocol, RemoteAccessSettings

PROTOCOL_SLUGS = {protocol.value.lower(): protocol for protocol in Protocol}


@login_required
def device_list(request: HttpRequest) -> HttpResponse:
    devices = devices_for(request.user).select_related("group").order_by("name", "serial")
    return render(request, "endpoints/device_list.html", {"devices": devices})


@login_required
def device_detail(request: HttpRequest, device_id: int) -> HttpResponse:
    device = get_device(request.user, device_id)
    if device.supports_remote_access:
        return redirect("remote-access", device_id=device.pk)
    return redirect("control", device_id=device.pk)


@login_required
def remote_access(request: HttpRequest, device_id: int) -> HttpResponse:
    device = get_device(request.user, device_id)
    if not device.supports_remote_access:
        raise Http404("This device does not support remote access.")
    context = {
        "device": device,
        "tab": "remote-access",
        "endpoints": device.endpoints.all(),
        "is_admin": has_access(request.user, device, Level.ADMIN),
        "protocols": [(protocol.value.lower(), protocol.label) for protocol in Protocol],
    }
    return render(request, "endpoints/remote_access.html", context)


def _endpoint_form_page(request: HttpRequest, device: Device, endpoint: Endpoint) -> HttpResponse:
    adding = endpoint.pk is None
    form = EndpointForm(request.POST or None, request.FILES or None, instance=endpoint)
    if request.method == "POST" and form.is_valid():
        generated = form.cleaned_data.get("generate_key_pair")
        endpoint = form.save()
        verb = "added" if adding else "saved"
        messages.success(request, f"Endpoint “{endpoint.name}” {verb}.")
        if generated:
            messages.info(
                request,
                "A new key pair was generated: copy the public key below into "
                "~/.ssh/authorized_keys of the user on the target.",
            )
            return redirect("endpoint-edit", device_id=device.pk, endpoint_id=endpoint.pk)
        return redirect("remote-access", device_id=device.pk)
    context = {"device": device, "tab": "remote-access", "form": form, "endpoint": endpoint, "adding": adding}
    return render(request, "endpoints/endpoint_form.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_add(request: HttpRequest, device_id: int, protocol: str) -> HttpResponse:
    device = get_device(request.user, device_id, Level.ADMIN)
    if protocol not in PROTOCOL_SLUGS:
        raise Http404("No such protocol.")
    endpoint = Endpoint(device=device, protocol=PROTOCOL_SLUGS[protocol])
    return _endpoint_form_page(request, device, endpoint)


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_edit(request: HttpRequest, device_id: int, endpoint_id: int) -> HttpResponse:
    endpoint = get_endpoint(request.user, device_id, endpoint_id, Level.ADMIN)
    return _endpoint_form_page(request, endpoint.device, endpoint)


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_remove(request: HttpRequest, device_id: int, endpoint_id: int) -> HttpResponse:
    endpoint = get_endpoint(request.user, device_id, endpoint_id, Level.ADMIN)
    if request.method == "POST":
        endpoint.delete()
        messages.success(request, f"Endpoint “{endpoint.name}” removed.")
        return redirect("remote-access", device_id=endpoint.device.pk)
    context = {"device": endpoint.device, "tab": "remote-access", "endpoint": endpoint}
    return render(request, "endpoints/endpoint_confirm_remove.html", context)


@login_required
@permission_required("endpoints.add_device", raise_exception=True)
@require_http_methods(["GET", "POST"])
def register_device(request: HttpRequest) -> HttpResponse:
    form = DeviceRegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device, otp = form.save()
        server_url = request.build_absolute_uri("/").rstrip("/")
        context = {"device": device, "otp": otp, "server_url": server_url}
        # Shown once, never stored in plain text: no redirect to a page that
        # could be reloaded or bookmarked.
        response = render(request, "endpoints/register_device_done.html", context)
        response.headers["Cache-Control"] = "no-store"
        return response
    return render(request, "endpoints/register_device.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def remote_access_settings(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only staff may change the remote access settings.")
    form = RemoteAccessSettingsForm(request.POST or None, instance=RemoteAccessSettings.load())
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Remote access settings saved.")
        return redirect(reverse("remote-access-settings"))
    return render(request, "endpoints/settings.html", {"form": form})
