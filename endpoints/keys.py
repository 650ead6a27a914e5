"""Reading, checking and making SSH keys, with messages a person can act on.

asyncssh reads OpenSSH, PKCS#1/SEC1 PEM and PKCS#8 private keys and RFC 4716
public keys; private keys in the ssh.com ("SSH2") layout are converted here,
since Cumulocity accepts them and asyncssh does not.
"""

import base64
import hashlib
import re
import struct
from dataclasses import dataclass

import asyncssh
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes

MAX_KEY_TEXT = 64 * 1024
SSHCOM_MAGIC = 0x3F6FF9EB
SSHCOM_BEGIN = "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"
SSHCOM_END = "---- END SSH2 ENCRYPTED PRIVATE KEY ----"
CONVERT_HINT = "convert it with: ssh-keygen -p -f KEYFILE (OpenSSH) or puttygen KEYFILE -O private-openssh -o NEWFILE"


class InvalidKey(ValueError):
    """A key that cannot be used, with the reason in words."""


@dataclass(frozen=True)
class PrivateKey:
    openssh: str
    public_openssh: str
    algorithm: str
    fingerprint: str


def _clean(text: str) -> str:
    if len(text) > MAX_KEY_TEXT:
        raise InvalidKey(f"the key is too long ({len(text)} characters; at most {MAX_KEY_TEXT})")
    return text.replace("\r\n", "\n").strip() + "\n"


def read_private_key(text: str, passphrase: str = "") -> PrivateKey:
    """Parse a private key in any supported format and return it in OpenSSH form.

    An encrypted key is decrypted with the passphrase and stored unencrypted
    (the database encrypts it at rest), so sessions need no passphrase later.
    """
    text = _clean(text)
    if "PuTTY-User-Key-File" in text:
        raise InvalidKey(f"PuTTY .ppk keys are not supported: {CONVERT_HINT}")
    if SSHCOM_BEGIN in text:
        key = _import(_sshcom_to_pem(text, passphrase), "")
    else:
        key = _import(text.encode(), passphrase)
    return _as_private_key(key)


def _as_private_key(key: asyncssh.SSHKey) -> PrivateKey:
    return PrivateKey(
        openssh=key.export_private_key("openssh").decode(),
        public_openssh=key.export_public_key("openssh").decode().strip(),
        algorithm=key.get_algorithm(),
        fingerprint=key.get_fingerprint("sha256"),
    )


def _import(data: bytes, passphrase: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_private_key(data, passphrase or None)
    except asyncssh.KeyEncryptionError:
        raise InvalidKey("the passphrase does not decrypt the private key") from None
    except asyncssh.KeyImportError as exc:
        message = str(exc)
        if "Passphrase must be specified" in message:
            raise InvalidKey("the private key is encrypted: enter its passphrase") from None
        if "Unable to decrypt" in message or "Incorrect passphrase" in message:
            raise InvalidKey("the passphrase does not decrypt the private key") from None
        raise InvalidKey(f"not a usable private key ({message})") from None
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"not a usable private key ({exc})") from None


def read_public_key(text: str) -> asyncssh.SSHKey:
    """Parse an OpenSSH public key line or an RFC 4716 public key block."""
    text = _clean(text)
    if "PRIVATE KEY" in text:
        raise InvalidKey("this is a private key; paste the public key here")
    try:
        return asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError, TypeError) as exc:
        raise InvalidKey(f"not a usable public key ({exc})") from None


def read_host_key(text: str) -> str:
    """The host key as one OpenSSH line; a known_hosts line is accepted too."""
    text = text.strip()
    try:
        key = read_public_key(text)
    except InvalidKey:
        # A known_hosts line: host name(s), then the key.
        fields = text.split()
        if len(fields) < 3 or "\n" in text:
            raise
        key = read_public_key(" ".join(fields[1:]))
    return key.export_public_key("openssh").decode().strip()


def fingerprint(public_openssh: str) -> str:
    """SHA256 fingerprint as OpenSSH prints it, or '' for no key."""
    if not public_openssh:
        return ""
    return read_public_key(public_openssh).get_fingerprint("sha256")


def generate_key_pair(comment: str = "") -> PrivateKey:
    return _as_private_key(asyncssh.generate_private_key("ssh-ed25519", comment=comment or None))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise InvalidKey("the SSH2 private key is truncated or damaged")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def uint32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def string(self) -> bytes:
        return self.take(self.uint32())

    def mpint(self) -> int:
        # ssh.com counts an integer's length in bits, not bytes.
        bits = self.uint32()
        return int.from_bytes(self.take((bits + 7) // 8), "big")


def _sshcom_to_pem(text: str, passphrase: str) -> bytes:
    body = text[text.index(SSHCOM_BEGIN) + len(SSHCOM_BEGIN) :]
    if SSHCOM_END not in body:
        raise InvalidKey("the SSH2 private key has no END line")
    body = body[: body.index(SSHCOM_END)]
    lines = body.strip().split("\n")
    base64_lines = []
    continued = False
    for line in lines:
        header = continued or re.match(r"^[A-Za-z0-9-]+:", line)
        continued = bool(header) and line.endswith("\\")
        if not header:
            base64_lines.append(line.strip())
    try:
        blob = base64.b64decode("".join(base64_lines), validate=True)
    except ValueError:
        raise InvalidKey("the SSH2 private key's base64 body is damaged") from None
    reader = _Reader(blob)
    if reader.uint32() != SSHCOM_MAGIC:
        raise InvalidKey("not an SSH2 private key (wrong magic number)")
    reader.uint32()
    key_type = reader.string().decode("ascii", "replace")
    cipher = reader.string().decode("ascii", "replace")
    payload = reader.string()
    if cipher == "3des-cbc":
        if not passphrase:
            raise InvalidKey("the private key is encrypted: enter its passphrase")
        payload = _sshcom_decrypt(payload, passphrase)
    elif cipher != "none":
        raise InvalidKey(f"the SSH2 private key uses cipher {cipher!r}, which is not supported; {CONVERT_HINT}")
    inner = _Reader(payload)
    length = inner.uint32()
    if length > len(payload) - 4:
        raise InvalidKey("the passphrase does not decrypt the private key")
    inner = _Reader(inner.take(length))
    if key_type.startswith("if-modn{sign{rsa"):
        private = _sshcom_rsa(inner)
    elif key_type.startswith("dl-modp{sign{dsa"):
        private = _sshcom_dsa(inner)
    else:
        raise InvalidKey(f"SSH2 private keys of type {key_type!r} are not supported; {CONVERT_HINT}")
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _sshcom_decrypt(data: bytes, passphrase: str) -> bytes:
    secret = passphrase.encode()
    first = hashlib.md5(secret, usedforsecurity=False).digest()
    second = hashlib.md5(secret + first, usedforsecurity=False).digest()
    if len(data) % 8:
        raise InvalidKey("the SSH2 private key is truncated or damaged")
    decryptor = Cipher(TripleDES((first + second)[:24]), modes.CBC(bytes(8))).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def _sshcom_rsa(reader: _Reader) -> rsa.RSAPrivateKey:
    e, d, n, _u, first, second = (reader.mpint() for _ in range(6))
    if first * second != n or first < 2 or second < 2:
        raise InvalidKey("the passphrase does not decrypt the private key")
    p, q = max(first, second), min(first, second)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, n),
    )
    try:
        return numbers.private_key()
    except ValueError:
        raise InvalidKey("the SSH2 private key is damaged (inconsistent RSA numbers)") from None


def _sshcom_dsa(reader: _Reader) -> dsa.DSAPrivateKey:
    if reader.uint32() != 0:
        raise InvalidKey("SSH2 DSA keys with predefined parameters are not supported; " + CONVERT_HINT)
    p, g, q, y, x = (reader.mpint() for _ in range(5))
    numbers = dsa.DSAPrivateNumbers(x, dsa.DSAPublicNumbers(y, dsa.DSAParameterNumbers(p, q, g)))
    try:
        return numbers.private_key()
    except ValueError:
        raise InvalidKey("the passphrase does not decrypt the private key") from None
