from django.apps import AppConfig


class RemoteSessionsConfig(AppConfig):
    name = "sessions"
    # "sessions" is Django's own app label.
    label = "remote_sessions"
    verbose_name = "Remote sessions"

    def ready(self) -> None:
        # Ending a deactivated or deleted user's sessions hangs on signals.
        from sessions import revocation  # noqa: F401
