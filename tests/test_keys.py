"""endpoints.keys against real keys made by ssh-keygen and puttygen at test time.

No key material is committed: each key is generated once per module in a
temporary folder, then converted to the other layouts with the same tools,
so every layout of one algorithm holds the same key and the expected public
key and fingerprint come from ``ssh-keygen -lf KEY.pub -E sha256``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from endpoints import keys

PASSPHRASE = "correct horse battery staple"
WRONG_PASSPHRASE = "incorrect horse"

# ssh-keygen's arguments for each algorithm; RSA 2048 keeps the module fast.
ALGORITHMS = {
    "rsa": ["-t", "rsa", "-b", "2048"],
    "dsa": ["-t", "dsa"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "ed25519": ["-t", "ed25519"],
}
# The first line ssh-keygen writes for each layout (its -m option).
HEADERS = {
    "openssh": "-----BEGIN OPENSSH PRIVATE KEY-----",
    "PEM": "-----BEGIN {kind} PRIVATE KEY-----",
    "PKCS8": "-----BEGIN PRIVATE KEY-----",
    "PKCS8-encrypted": "-----BEGIN ENCRYPTED PRIVATE KEY-----",
}
PEM_KINDS = {"rsa": "RSA", "dsa": "DSA", "ecdsa256": "EC", "ecdsa384": "EC", "ecdsa521": "EC"}

# OpenSSH 9.2's ssh-keygen writes Ed25519 keys in its own layout only: asked
# for -m PEM or -m PKCS8 it silently writes an OpenSSH key, so Ed25519 is
# covered by the OpenSSH layout alone. puttygen exports ssh.com keys for RSA
# and DSA only ("unable to export key" for ECDSA and Ed25519).
SSH_KEYGEN_LAYOUTS = [("openssh", algorithm) for algorithm in ALGORITHMS] + [
    (layout, algorithm) for layout in ("PEM", "PKCS8") for algorithm in ALGORITHMS if algorithm != "ed25519"
]
SSHCOM_ALGORITHMS = ["rsa", "dsa"]
WRONG_PASSPHRASE_MESSAGE = "the passphrase does not decrypt the private key"

def require_tool(name: str) -> str:
    """The tool's path; skip without it, but fail on CI, where it must be installed."""
    path = shutil.which(name)
    if path is None:
        package = {"puttygen": "putty-tools", "ssh-keygen": "openssh-client"}[name]
        message = f"{name} is not installed (Debian package {package}); it makes the keys these tests read"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run(*args: str | Path) -> str:
    result = subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{args} failed: {result.stderr or result.stdout}"
    return result.stdout


class KeyFactory:
    """Makes each key once and keeps it for the module."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cache: dict[tuple, Path] = {}
        self.passphrase_file = folder / "passphrase"
        self.passphrase_file.write_text(PASSPHRASE + "\n")

    def _once(self, name: tuple, make) -> Path:
        if name not in self.cache:
            self.cache[name] = make(self.folder / "_".join(str(part) for part in name if part))
        return self.cache[name]

    def original(self, algorithm: str) -> Path:
        """The OpenSSH private key, unencrypted, with KEY.pub beside it."""
        ssh_keygen = require_tool("ssh-keygen")

        def make(path: Path) -> Path:
            run(ssh_keygen, "-q", *ALGORITHMS[algorithm], "-N", "", "-C", f"tester@{algorithm}", "-f", path)
            return path

        return self._once((algorithm,), make)

    def public(self, algorithm: str) -> Path:
        return self.original(algorithm).with_name(self.original(algorithm).name + ".pub")

    def ssh_keygen_layout(self, algorithm: str, layout: str, encrypted: bool) -> Path:
        """The same key rewritten by ``ssh-keygen -p -m LAYOUT`` (with a passphrase if encrypted)."""
        ssh_keygen = require_tool("ssh-keygen")
        original = self.original(algorithm)

        def make(path: Path) -> Path:
            shutil.copyfile(original, path)
            path.chmod(0o600)
            mode = ["-m", layout] if layout != "openssh" else []
            run(ssh_keygen, "-q", "-p", "-P", "", "-N", PASSPHRASE if encrypted else "", *mode, "-f", path)
            return path

        return self._once((algorithm, layout, "encrypted" if encrypted else ""), make)

    def sshcom(self, algorithm: str, encrypted: bool, comment: str = "") -> Path:
        """The same key exported by puttygen in the ssh.com ("SSH2") layout."""
        puttygen = require_tool("puttygen")
        original = self.original(algorithm)

        def make(path: Path) -> Path:
            options = ["--new-passphrase", self.passphrase_file] if encrypted else []
            if comment:
                options += ["-C", comment]
            run(puttygen, original, "-O", "private-sshcom", *options, "-o", path)
            return path

        return self._once((algorithm, "sshcom", "encrypted" if encrypted else "", str(len(comment))), make)

    def ppk(self, algorithm: str) -> Path:
        puttygen = require_tool("puttygen")
        original = self.original(algorithm)

        def make(path: Path) -> Path:
            run(puttygen, original, "-O", "private", "-o", path)
            return path

        return self._once((algorithm, "ppk"), make)

    def rfc4716_public(self, algorithm: str) -> str:
        return run(require_tool("ssh-keygen"), "-e", "-m", "RFC4716", "-f", self.public(algorithm))


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> KeyFactory:
    return KeyFactory(tmp_path_factory.mktemp("keys"))


def ssh_keygen_fingerprint(public_key_file: Path) -> str:
    """What ``ssh-keygen -lf FILE -E sha256`` prints as the fingerprint (``SHA256:…``)."""
    return run(require_tool("ssh-keygen"), "-lf", public_key_file, "-E", "sha256").split()[1]


def type_and_blob(public_line: str) -> list[str]:
    return public_line.split()[:2]


def public_part_as_ssh_keygen_sees_it(private_openssh: str, folder: Path) -> str:
    """``ssh-keygen -y`` on the returned key: it is a real, unencrypted OpenSSH key."""
    path = folder / "returned_key"
    path.write_text(private_openssh)
    path.chmod(0o600)
    return run(require_tool("ssh-keygen"), "-y", "-P", "", "-f", path)


def assert_readable(message: str) -> None:
    """One short line, in words, about the key: something a person can act on."""
    assert message.strip(), "the message is empty"
    assert "\n" not in message
    assert len(message) < 300
    assert "Traceback" not in message
    assert "key" in message.lower()


def private_key_file(factory: KeyFactory, layout: str, algorithm: str, encrypted: bool) -> Path:
    if layout == "sshcom":
        return factory.sshcom(algorithm, encrypted)
    return factory.ssh_keygen_layout(algorithm, layout, encrypted)


def expected_header(layout: str, algorithm: str, encrypted: bool) -> str:
    if layout == "sshcom":
        return keys.SSHCOM_BEGIN
    if layout == "PKCS8" and encrypted:
        return HEADERS["PKCS8-encrypted"]
    return HEADERS[layout].format(kind=PEM_KINDS.get(algorithm, ""))


ALL_LAYOUTS = SSH_KEYGEN_LAYOUTS + [("sshcom", algorithm) for algorithm in SSHCOM_ALGORITHMS]
LAYOUT_IDS = [f"{layout}-{algorithm}" for layout, algorithm in ALL_LAYOUTS]


# --- read_private_key: every layout, plain and encrypted ---------------------------------


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize(("layout", "algorithm"), ALL_LAYOUTS, ids=LAYOUT_IDS)
def test_it_reads_a_private_key_into_openssh_form_with_the_same_public_key_and_fingerprint(
    factory: KeyFactory, tmp_path: Path, layout: str, algorithm: str, encrypted: bool
) -> None:
    path = private_key_file(factory, layout, algorithm, encrypted)
    text = path.read_text()
    assert text.startswith(expected_header(layout, algorithm, encrypted)), "the tool wrote another layout"
    expected_public = factory.public(algorithm).read_text()

    key = keys.read_private_key(text, PASSPHRASE if encrypted else "")

    assert key.openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert type_and_blob(key.public_openssh) == type_and_blob(expected_public)
    assert key.algorithm == expected_public.split()[0]
    assert key.fingerprint == ssh_keygen_fingerprint(factory.public(algorithm))
    # Stored decrypted (the database encrypts it): ssh-keygen reads it with no passphrase.
    assert type_and_blob(public_part_as_ssh_keygen_sees_it(key.openssh, tmp_path)) == type_and_blob(
        expected_public
    )


ENCRYPTED_PARAMS = [
    pytest.param(layout, algorithm, id=f"{layout}-{algorithm}") for layout, algorithm in ALL_LAYOUTS
]


@pytest.mark.parametrize(("layout", "algorithm"), ENCRYPTED_PARAMS)
def test_it_asks_for_the_passphrase_of_an_encrypted_private_key(
    factory: KeyFactory, layout: str, algorithm: str
) -> None:
    text = private_key_file(factory, layout, algorithm, encrypted=True).read_text()

    with pytest.raises(keys.InvalidKey) as refused:
        keys.read_private_key(text)

    assert str(refused.value) == "the private key is encrypted: enter its passphrase"


@pytest.mark.parametrize(("layout", "algorithm"), ENCRYPTED_PARAMS)
def test_it_refuses_a_wrong_passphrase_with_a_message(factory: KeyFactory, layout: str, algorithm: str) -> None:
    text = private_key_file(factory, layout, algorithm, encrypted=True).read_text()

    with pytest.raises(keys.InvalidKey) as refused:
        keys.read_private_key(text, WRONG_PASSPHRASE)

    assert_readable(str(refused.value))
    assert "passphrase" in str(refused.value)


@pytest.mark.parametrize(
    ("layout", "algorithm"),
    [
        pytest.param(layout, algorithm, id=f"{layout}-{algorithm}")
        for layout, algorithm in ALL_LAYOUTS
    ],
)
def test_it_says_the_passphrase_is_wrong_in_the_same_words_for_every_layout(
    factory: KeyFactory, layout: str, algorithm: str
) -> None:
    text = private_key_file(factory, layout, algorithm, encrypted=True).read_text()

    with pytest.raises(keys.InvalidKey) as refused:
        keys.read_private_key(text, WRONG_PASSPHRASE)

    assert str(refused.value) == WRONG_PASSPHRASE_MESSAGE


def test_it_reads_an_ssh2_private_key_whose_comment_header_is_wrapped(factory: KeyFactory) -> None:
    comment = "a comment long enough that puttygen wraps the header line with a backslash " * 2
    text = factory.sshcom("rsa", encrypted=False, comment=comment.strip()).read_text()
    assert "\\\n" in text, "puttygen did not wrap the Comment header"

    key = keys.read_private_key(text)

    assert key.fingerprint == ssh_keygen_fingerprint(factory.public("rsa"))


def test_it_reads_a_private_key_pasted_with_windows_line_endings_and_blank_lines_around(
    factory: KeyFactory,
) -> None:
    text = "\r\n\r\n" + factory.original("ecdsa256").read_text().replace("\n", "\r\n") + "\r\n  \r\n"

    key = keys.read_private_key(text)

    assert key.fingerprint == ssh_keygen_fingerprint(factory.public("ecdsa256"))


def test_it_refuses_a_putty_ppk_key_and_says_how_to_convert_it(factory: KeyFactory) -> None:
    text = factory.ppk("rsa").read_text()
    assert text.startswith("PuTTY-User-Key-File-")

    with pytest.raises(keys.InvalidKey) as refused:
        keys.read_private_key(text)

    message = str(refused.value)
    assert_readable(message)
    assert ".ppk" in message
    assert "puttygen KEYFILE -O private-openssh -o NEWFILE" in message


# --- read_private_key: what it refuses ---------------------------------------------------


def _truncated_openssh(factory: KeyFactory) -> str:
    text = factory.original("ed25519").read_text()
    return text[: len(text) // 2]


def _openssh_body_cut_but_end_line_kept(factory: KeyFactory) -> str:
    lines = factory.original("rsa").read_text().splitlines()
    return "\n".join(lines[:4] + lines[-1:])


def _truncated_pem(factory: KeyFactory) -> str:
    text = factory.ssh_keygen_layout("rsa", "PEM", encrypted=False).read_text()
    return text[: len(text) // 2]


def _sshcom_body_cut_but_end_line_kept(factory: KeyFactory) -> str:
    lines = factory.sshcom("rsa", encrypted=False).read_text().splitlines()
    return "\n".join(lines[:6] + lines[-1:])


def _sshcom_without_end_line(factory: KeyFactory) -> str:
    lines = factory.sshcom("dsa", encrypted=False).read_text().splitlines()
    return "\n".join(lines[:-1])


def _public_key_pasted_as_private(factory: KeyFactory) -> str:
    return factory.public("ed25519").read_text()


BAD_PRIVATE_KEYS = {
    "garbage": lambda factory: "this is not a key at all",
    "empty": lambda factory: "",
    "control characters": lambda factory: "\x00\x01\x02\x03",
    "armour around no key": lambda factory: (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n"
    ),
    "truncated OpenSSH key": _truncated_openssh,
    "OpenSSH key with its body cut": _openssh_body_cut_but_end_line_kept,
    "truncated PEM key": _truncated_pem,
    "SSH2 key with its body cut": _sshcom_body_cut_but_end_line_kept,
    "SSH2 key without END line": _sshcom_without_end_line,
    "public key pasted as private": _public_key_pasted_as_private,
}


@pytest.mark.parametrize("make_text", BAD_PRIVATE_KEYS.values(), ids=BAD_PRIVATE_KEYS.keys())
def test_it_refuses_a_text_that_is_not_a_usable_private_key(factory: KeyFactory, make_text) -> None:
    text = make_text(factory)

    with pytest.raises(keys.InvalidKey) as refused:
        keys.read_private_key(text)

    assert_readable(str(refused.value))


@pytest.mark.parametrize("reader", [keys.read_private_key, keys.read_public_key, keys.read_host_key])
def test_it_refuses_a_key_text_longer_than_64_kib(reader) -> None:
    text = "A" * (64 * 1024 + 1)

    with pytest.raises(keys.InvalidKey) as refused:
        reader(text)

    assert str(refused.value) == "the key is too long (65537 characters; at most 65536)"


def test_it_accepts_a_key_text_of_exactly_64_kib(factory: KeyFactory) -> None:
    # The limit counts the text as pasted: padding up to it is not "too long".
    key_text = factory.original("ed25519").read_text()
    text = key_text + "\n" * (keys.MAX_KEY_TEXT - len(key_text))
    assert len(text) == keys.MAX_KEY_TEXT

    assert keys.read_private_key(text).fingerprint == ssh_keygen_fingerprint(factory.public("ed25519"))


# --- read_public_key ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_it_reads_an_openssh_public_key_line(factory: KeyFactory, algorithm: str) -> None:
    line = factory.public(algorithm).read_text()

    key = keys.read_public_key(line)

    assert type_and_blob(key.export_public_key("openssh").decode()) == type_and_blob(line)
    assert key.get_fingerprint("sha256") == ssh_keygen_fingerprint(factory.public(algorithm))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_it_reads_an_rfc_4716_public_key(factory: KeyFactory, algorithm: str) -> None:
    block = factory.rfc4716_public(algorithm)
    assert block.startswith("---- BEGIN SSH2 PUBLIC KEY ----")

    key = keys.read_public_key(block)

    assert type_and_blob(key.export_public_key("openssh").decode()) == type_and_blob(
        factory.public(algorithm).read_text()
    )


def test_it_refuses_a_private_key_pasted_as_the_public_key(factory: KeyFactory) -> None:
    with pytest.raises(keys.InvalidKey) as refused:
        keys.read_public_key(factory.original("ed25519").read_text())

    assert str(refused.value) == "this is a private key; paste the public key here"


@pytest.mark.parametrize(
    "text",
    ["", "not a key", "ssh-ed25519 not-base64!!", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK56"],
    ids=["empty", "words", "bad base64", "cut blob"],
)
def test_it_refuses_a_text_that_is_not_a_public_key(text: str) -> None:
    with pytest.raises(keys.InvalidKey) as refused:
        keys.read_public_key(text)

    assert_readable(str(refused.value))


# --- read_host_key -----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa256", "rsa"])
def test_it_reads_a_host_key_given_as_an_openssh_public_key_line(factory: KeyFactory, algorithm: str) -> None:
    line = factory.public(algorithm).read_text()

    stored = keys.read_host_key("\n  " + line.replace("\n", "\r\n") + "\n\n")

    assert stored == line.strip()
    assert "\n" not in stored


@pytest.mark.parametrize(
    "hosts",
    ["plc.local", "plc.local,10.0.0.5", "[10.0.0.5]:2222", "|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg="],
    ids=["one host", "host list", "host and port", "hashed host"],
)
@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa256"])
def test_it_reads_a_known_hosts_line_and_keeps_only_the_key(factory: KeyFactory, algorithm: str, hosts: str) -> None:
    key_type, blob = type_and_blob(factory.public(algorithm).read_text())

    stored = keys.read_host_key(f"{hosts} {key_type} {blob}\n")

    assert stored == f"{key_type} {blob}"


@pytest.mark.parametrize("host", ["ssh-gw.plant.local", "ecdsa-test-rig", "sk-line4"])
def test_it_reads_a_known_hosts_line_whose_host_name_starts_like_a_key_type(
    factory: KeyFactory, host: str
) -> None:
    key_type, blob = type_and_blob(factory.public("ed25519").read_text())

    assert keys.read_host_key(f"{host} {key_type} {blob}") == f"{key_type} {blob}"


def test_it_reads_a_host_key_given_in_rfc_4716_form(factory: KeyFactory) -> None:
    stored = keys.read_host_key(factory.rfc4716_public("ed25519"))

    assert type_and_blob(stored) == type_and_blob(factory.public("ed25519").read_text())
    assert "\n" not in stored


@pytest.mark.parametrize(
    "text", ["not a host key", "plc.local ssh-ed25519 not-base64!!"], ids=["words", "known_hosts with bad key"]
)
def test_it_refuses_a_host_key_it_cannot_read(text: str) -> None:
    with pytest.raises(keys.InvalidKey) as refused:
        keys.read_host_key(text)

    assert_readable(str(refused.value))


def test_it_refuses_a_private_key_given_as_the_host_key(factory: KeyFactory) -> None:
    with pytest.raises(keys.InvalidKey) as refused:
        keys.read_host_key(factory.original("ed25519").read_text())

    assert str(refused.value) == "this is a private key; paste the public key here"


# --- fingerprint and generate_key_pair ---------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_its_fingerprint_matches_what_ssh_keygen_prints(factory: KeyFactory, algorithm: str) -> None:
    line = factory.public(algorithm).read_text().strip()

    assert keys.fingerprint(line) == ssh_keygen_fingerprint(factory.public(algorithm))


def test_its_fingerprint_of_no_key_is_empty() -> None:
    assert keys.fingerprint("") == ""


def test_it_generates_an_ed25519_key_pair_that_ssh_keygen_reads(tmp_path: Path) -> None:
    require_tool("ssh-keygen")

    pair = keys.generate_key_pair(comment="gw-0001-PLC shell")

    assert pair.algorithm == "ssh-ed25519"
    assert pair.public_openssh.startswith("ssh-ed25519 AAAA")
    assert pair.public_openssh.endswith(" gw-0001-PLC shell")
    public_file = tmp_path / "generated.pub"
    public_file.write_text(pair.public_openssh + "\n")
    listed = run("ssh-keygen", "-lf", public_file, "-E", "sha256").split()
    assert listed[0] == "256"
    assert listed[1] == pair.fingerprint
    assert listed[-1] == "(ED25519)"
    assert type_and_blob(public_part_as_ssh_keygen_sees_it(pair.openssh, tmp_path)) == type_and_blob(
        pair.public_openssh
    )


def test_it_generates_a_new_key_pair_each_time() -> None:
    first, second = keys.generate_key_pair(), keys.generate_key_pair()

    assert first.fingerprint != second.fingerprint
    assert first.openssh != second.openssh


def test_its_generated_private_key_reads_back_as_the_same_key() -> None:
    pair = keys.generate_key_pair()

    again = keys.read_private_key(pair.openssh)

    assert (again.public_openssh, again.fingerprint, again.algorithm) == (
        pair.public_openssh,
        pair.fingerprint,
        pair.algorithm,
    )
