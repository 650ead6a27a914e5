from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from portal.forms import ApiTokenForm
from portal.models import ApiToken
from sessions.revocation import revoke_api_token


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST or None)
    new_token = ""
    if request.method == "POST" and form.is_valid():
        _, new_token = ApiToken.issue(request.user, form.cleaned_data["name"])
        form = ApiTokenForm()
    context = {"form": form, "tokens": request.user.api_tokens.all(), "new_token": new_token}
    response = render(request, "portal/profile.html", context)
    if new_token:
        # The token is shown this once; keep it out of any cache.
        response.headers["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    ended = revoke_api_token(token)
    messages.success(request, f"Token “{token.name}” revoked." + (f" {ended} session(s) ended." if ended else ""))
    return redirect("profile")
