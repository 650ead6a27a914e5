from typing import Any

from django.db import models

from endpoints import encryption


class EncryptedTextField(models.TextField):
    """Text kept encrypted in the database; the empty string stays empty.

    Values are encrypted with a fresh nonce each time, so the column cannot be
    searched or compared in SQL, only read back.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return encryption.decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return encryption.encrypt(value)
