from django.urls import path

from endpoints import api, configurations_api, views

urlpatterns = [
    path("devices/", views.device_list, name="device-list"),
    path("devices/register/", views.register_device, name="device-register"),
    path("devices/<int:device_id>/", views.device_detail, name="device-detail"),
    path("devices/<int:device_id>/remote-access/", views.remote_access, name="remote-access"),
    path(
        "devices/<int:device_id>/remote-access/add/<slug:protocol>/",
        views.endpoint_add,
        name="endpoint-add",
    ),
    path(
        "devices/<int:device_id>/remote-access/<int:endpoint_id>/edit/",
        views.endpoint_edit,
        name="endpoint-edit",
    ),
    path(
        "devices/<int:device_id>/remote-access/<int:endpoint_id>/remove/",
        views.endpoint_remove,
        name="endpoint-remove",
    ),
    path("settings/remote-access/", views.remote_access_settings, name="remote-access-settings"),
    path("service/remoteaccess/registration", api.registration, name="device-registration"),
    path(
        "service/remoteaccess/devices/<str:device_id>/configurations",
        configurations_api.configurations,
        name="api-configurations",
    ),
    path(
        "service/remoteaccess/devices/<str:device_id>/configurations/<str:endpoint_id>",
        configurations_api.configuration,
        name="api-configuration",
    ),
    path("service/remoteaccess/keypair/generate", configurations_api.generate_key_pair, name="api-keypair"),
    path("service/remoteaccess/health", configurations_api.health, name="api-health"),
]
