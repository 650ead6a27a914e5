from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from portal import cumulocity, views
from portal.forms import LoginForm

admin.site.site_header = "Remote access gateway"
admin.site.site_title = "Remote access gateway"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="device-list", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/profile/", views.profile, name="profile"),
    path("accounts/profile/tokens/<int:token_id>/revoke/", views.revoke_token, name="revoke-token"),
    path("admin/", admin.site.urls),
    path("tenant/loginOptions", cumulocity.login_options),
    path("tenant/oauth", cumulocity.oauth),
    path("tenant/currentTenant", cumulocity.current_tenant),
    path("user/currentUser", cumulocity.current_user),
    path("identity/externalIds/<str:id_type>/<str:serial>", cumulocity.external_id),
    path("inventory/managedObjects/<str:device_id>", cumulocity.managed_object),
    path("", include("endpoints.urls")),
    path("", include("sessions.urls")),
]
