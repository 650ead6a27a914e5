from django.apps import AppConfig


class RemoteSessionsConfig(AppConfig):
    name = "sessions"
    # "sessions" is Django's own app label.
    label = "remote_sessions"
    verbose_name = "Remote sessions"
