"""The certificate of the HTTPS listener: the configured one, or in the
embedded mode a self-signed one made once in the data folder."""

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SELF_SIGNED_DAYS = 825


def certificate_files() -> tuple[Path, Path]:
    """(certificate, private key) as PEM files."""
    if settings.TLS_CERT_FILE or settings.TLS_KEY_FILE:
        cert, key = Path(settings.TLS_CERT_FILE), Path(settings.TLS_KEY_FILE)
        for name, path in (("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)):
            if not path.is_file():
                raise ImproperlyConfigured(f"{name}: no file at {path} (set both TLS_CERT_FILE and TLS_KEY_FILE)")
        return cert, key
    folder = settings.DATA_DIR / "tls"
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not cert.exists() or not key.exists():
        make_self_signed(cert, key, settings.ALLOWED_HOSTS)
    return cert, key


def make_self_signed(cert_path: Path, key_path: Path, hosts: list[str]) -> None:
    names: list[x509.GeneralName] = []
    for host in {"localhost", "127.0.0.1", "::1", *hosts}:
        host = host.strip("[]")
        if not host or host.startswith(".") or host == "*":
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "remote access gateway (self-signed)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
