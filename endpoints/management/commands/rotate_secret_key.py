from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from endpoints.encryption import SecretUnreadable
from endpoints.models import Endpoint

SECRET_FIELDS = ("password", "private_key")


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of REMOTE_ACCESS_SECRET_KEY. To rotate: "
        "put the new key first and keep the old one after it, run this, then drop the old key."
    )

    def handle(self, *args: object, **options: object) -> None:
        rotated = 0
        try:
            with transaction.atomic():
                # Reading decrypts with whichever configured key fits; saving
                # encrypts with the first.
                for endpoint in Endpoint.objects.select_for_update().order_by("pk"):
                    fields = [name for name in SECRET_FIELDS if getattr(endpoint, name)]
                    if fields:
                        endpoint.save(update_fields=fields)
                        rotated += len(fields)
        except SecretUnreadable as exc:
            raise CommandError(f"{exc}; nothing was changed") from None
        self.stdout.write(f"Re-encrypted {rotated} secrets with the first key.")
