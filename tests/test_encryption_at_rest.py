import pytest
from cryptography.fernet import Fernet
from django.db import connection

from endpoints.encryption import SecretUnreadable
from endpoints.models import Endpoint


def raw_columns(endpoint_id: int) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT password, private_key FROM endpoints_endpoint WHERE id = %s", [endpoint_id])
        return cursor.fetchone()


def test_the_database_column_holds_no_plaintext(ssh_endpoint):
    ssh_endpoint.private_key = "-----BEGIN OPENSSH PRIVATE KEY-----\nkey-material\n"
    ssh_endpoint.save()
    password, private_key = raw_columns(ssh_endpoint.pk)
    assert "s3cret-ssh-password" not in password and "key-material" not in private_key
    assert password.startswith("gAAAA") and private_key.startswith("gAAAA")
    fresh = Endpoint.objects.get(pk=ssh_endpoint.pk)
    assert fresh.password == "s3cret-ssh-password"
    assert fresh.private_key.endswith("key-material\n")


def test_empty_secrets_stay_empty(device):
    endpoint = Endpoint.objects.create(device=device, name="t", protocol="TELNET", hostname="h", port=23)
    assert raw_columns(endpoint.pk) == ("", "")


def test_a_database_without_the_key_cannot_be_read(ssh_endpoint, settings):
    settings.REMOTE_ACCESS_SECRET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(SecretUnreadable, match="REMOTE_ACCESS_SECRET_KEY"):
        Endpoint.objects.get(pk=ssh_endpoint.pk)


def test_an_old_key_still_reads_after_a_new_one_is_put_first(ssh_endpoint, settings):
    settings.REMOTE_ACCESS_SECRET_KEYS = [Fernet.generate_key().decode(), *settings.REMOTE_ACCESS_SECRET_KEYS]
    assert Endpoint.objects.get(pk=ssh_endpoint.pk).password == "s3cret-ssh-password"


def test_rotating_the_key_re_encrypts_every_secret(ssh_endpoint, vnc_endpoint, settings):
    from django.core.management import call_command

    old_keys = list(settings.REMOTE_ACCESS_SECRET_KEYS)
    before = raw_columns(ssh_endpoint.pk)
    new_key = Fernet.generate_key().decode()
    settings.REMOTE_ACCESS_SECRET_KEYS = [new_key, *old_keys]
    call_command("rotate_secret_key")
    assert raw_columns(ssh_endpoint.pk)[0] != before[0]
    settings.REMOTE_ACCESS_SECRET_KEYS = [new_key]
    assert Endpoint.objects.get(pk=ssh_endpoint.pk).password == "s3cret-ssh-password"
    assert Endpoint.objects.get(pk=vnc_endpoint.pk).password == "vnc-pass"


def test_rotating_without_the_old_key_changes_nothing_and_says_why(ssh_endpoint, settings):
    from django.core.management import CommandError, call_command

    before = raw_columns(ssh_endpoint.pk)
    settings.REMOTE_ACCESS_SECRET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="REMOTE_ACCESS_SECRET_KEY does not hold the key"):
        call_command("rotate_secret_key")
    assert raw_columns(ssh_endpoint.pk) == before
