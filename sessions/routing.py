from channels.auth import AuthMiddlewareStack
from django.urls import path, re_path

from sessions import consumers
from sessions.websocket_auth import ForeignOriginValidator, SameSiteOriginValidator

# Devices send no Origin header: their endpoints authenticate with the
# device's credentials and check no Origin.
websocket_urlpatterns = [
    path("service/remoteaccess/agent", consumers.AgentConsumer.as_asgi()),
    path("service/remoteaccess/device/<str:connection_key>", consumers.device_tunnel),
    # Users' endpoints: a browser's session cookie or an Authorization header.
    path(
        "service/remoteaccess/client/<str:device_id>/configurations/<str:endpoint_id>",
        ForeignOriginValidator(AuthMiddlewareStack(consumers.passthrough_client)),
    ),
    # Browser pages: only from our own origin, with the session cookie.
    path(
        "ws/sessions/<int:operation_id>/",
        SameSiteOriginValidator(AuthMiddlewareStack(consumers.terminal)),
    ),
    re_path(r"", consumers.not_found),
]
