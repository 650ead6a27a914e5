from django.urls import path

from sessions import views

urlpatterns = [
    path("devices/<int:device_id>/control/", views.control, name="control"),
    path("sessions/<int:operation_id>/", views.session, name="session"),
    path(
        "devices/<int:device_id>/remote-access/<int:endpoint_id>/connect/",
        views.connect,
        name="endpoint-connect",
    ),
]
