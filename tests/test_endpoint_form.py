"""The add/edit endpoint pages, driven as an ADMIN with Django's test client.

Each refusal is checked as the user sees it: the exact message, under the
field it belongs to, in the page's HTML. Who may open these pages is tested
elsewhere.
"""

from __future__ import annotations

import warnings
from html.parser import HTMLParser

import asyncssh
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse

from endpoints.models import CredentialsType, Endpoint, Protocol

PASSWORD = "s3cret-ssh-password"
PORT_MESSAGE = "Enter a port from 1 to 65535."
KEY_REQUIRED = "Paste or upload a private key, or generate a key pair."


class _FieldErrors(HTMLParser):
    """Collects the messages in <p class="error"> under each <div data-field="NAME">,
    and the form's own errors (<ul class="errorlist nonfield">) under "__all__"."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: dict[str, list[str]] = {}
        self.divs: list[str | None] = []
        self.text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div":
            self.divs.append(dict(attrs).get("data-field"))
        elif tag == "p" and "error" in classes:
            self.text = []
        elif tag == "ul" and "nonfield" in classes:
            self.divs.append("__all__")  # the form's own errors, <li> each
        elif tag == "li" and self.divs and self.divs[-1] == "__all__":
            self.text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("div", "ul") and self.divs and (tag == "div") == (self.divs[-1] != "__all__"):
            self.divs.pop()
        elif tag in ("p", "li") and self.text is not None:
            field = next((name for name in reversed(self.divs) if name), "?")
            self.errors.setdefault(field, []).append("".join(self.text).strip())
            self.text = None

    def handle_data(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)


def field_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, f"expected the form again, got {response.status_code}"
    parser = _FieldErrors()
    parser.feed(response.content.decode())
    return parser.errors


def add_url(device, protocol: str = "ssh") -> str:
    return reverse("endpoint-add", args=[device.pk, protocol])


def edit_url(endpoint: Endpoint) -> str:
    return reverse("endpoint-edit", args=[endpoint.device.pk, endpoint.pk])


def ssh_form(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "PLC shell",
        "hostname": "10.0.0.5",
        "port": "22",
        "credentials_type": CredentialsType.USER_PASS.value,
        "username": "pi",
        "password": PASSWORD,
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def key_pair_form(**changes: object) -> dict[str, object]:
    return ssh_form(credentials_type=CredentialsType.KEY_PAIR.value, password=None, **changes)


def encrypted_private_text(key: asyncssh.SSHKey, passphrase: str) -> str:
    # 16 bcrypt rounds, as ssh-keygen uses, instead of asyncssh's slower default of 128.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*bcrypt.kdf.. called with only", category=UserWarning)
        return key.export_private_key("openssh", passphrase=passphrase, rounds=16).decode()


def new_key(algorithm: str = "ssh-ed25519") -> asyncssh.SSHKey:
    return asyncssh.generate_private_key(algorithm, comment="tester@bench")


def private_text(key: asyncssh.SSHKey) -> str:
    return key.export_private_key("openssh").decode()


def public_text(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


def stored_column(endpoint: Endpoint, column: str) -> str:
    """The column as the database holds it, before the model decrypts it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {Endpoint._meta.db_table} WHERE id = %s", [endpoint.pk])
        return cursor.fetchone()[0]


@pytest.fixture(autouse=True)
def quick_password_hashing(settings) -> None:
    """The users in conftest get hashed passwords; a fast hasher keeps this module quick."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def key_pair_endpoint(client, device) -> Endpoint:
    """An SSH endpoint whose key pair was generated through the page."""
    response = client.post(add_url(device), key_pair_form(generate_key_pair="on"))
    assert response.status_code == 302
    return Endpoint.objects.get(device=device, name="PLC shell")


# --- what the page refuses, and the words it uses ---------------------------------------


def test_it_refuses_an_empty_name(client, device) -> None:
    response = client.post(add_url(device), ssh_form(name="   "))

    assert field_errors(response) == {"name": ["This field is required."]}
    assert not Endpoint.objects.exists()


def test_it_refuses_a_name_the_device_already_has(client, device, ssh_endpoint) -> None:
    response = client.post(add_url(device), ssh_form(name=ssh_endpoint.name, hostname="10.0.0.6"))

    assert field_errors(response) == {"name": ["This device already has an endpoint with this name."]}
    assert Endpoint.objects.count() == 1


def test_it_lets_an_edited_endpoint_keep_its_own_name(client, ssh_endpoint) -> None:
    response = client.post(edit_url(ssh_endpoint), ssh_form(name=ssh_endpoint.name, port="2222"))

    assert response.status_code == 302
    ssh_endpoint.refresh_from_db()
    assert ssh_endpoint.port == 2222


@pytest.mark.parametrize(
    ("hostname", "messages"),
    [
        (
            "bad host",
            ["bad host is not a valid host name or IP address: use letters, digits, hyphens and dots "
             "(for example plc-1.local or 192.168.1.10)."],
        ),
        (
            "-lead.example",
            ["-lead.example is not a valid host name or IP address: use letters, digits, hyphens and dots "
             "(for example plc-1.local or 192.168.1.10)."],
        ),
        (
            "a" * 300,
            ["Ensure this value has at most 255 characters (it has 300)."],
        ),
        ("999.1.1.1", ["999.1.1.1 is not a valid IPv4 address."]),
        ("fe80::zz", ["fe80::zz is not a valid IPv6 address."]),
    ],
    ids=["space", "leading hyphen", "300 characters", "IPv4 out of range", "bad IPv6"],
)
def test_it_refuses_a_host_that_is_not_a_host_name_or_an_ip_address(
    client, device, hostname: str, messages: list[str]
) -> None:
    response = client.post(add_url(device), ssh_form(hostname=hostname))

    assert field_errors(response) == {"hostname": messages}
    assert not Endpoint.objects.exists()


def test_it_refuses_port_0(client, device) -> None:
    response = client.post(add_url(device), ssh_form(port="0"))

    assert field_errors(response) == {"port": [PORT_MESSAGE]}


def test_it_refuses_a_port_above_65535(client, device) -> None:
    response = client.post(add_url(device), ssh_form(port="65536"))

    assert field_errors(response) == {"port": [PORT_MESSAGE]}


def test_it_refuses_a_port_that_is_not_a_number(client, device) -> None:
    response = client.post(add_url(device), ssh_form(port="abc"))

    assert field_errors(response) == {"port": [PORT_MESSAGE]}


def test_it_accepts_ports_1_and_65535(client, device) -> None:
    assert client.post(add_url(device), ssh_form(name="low", port="1")).status_code == 302
    assert client.post(add_url(device), ssh_form(name="high", port="65535")).status_code == 302

    assert sorted(Endpoint.objects.values_list("port", flat=True)) == [1, 65535]


def test_it_asks_for_the_user_name_of_an_ssh_endpoint(client, device) -> None:
    response = client.post(add_url(device), ssh_form(username="  "))

    assert field_errors(response) == {"username": ["Enter the user name to log in as."]}


def test_it_asks_for_the_password_when_the_credentials_are_user_and_password(client, device) -> None:
    response = client.post(add_url(device), ssh_form(password=""))

    assert field_errors(response) == {"password": ["Enter the password."]}


def test_it_asks_for_a_private_key_when_the_credentials_are_a_key_pair(client, device) -> None:
    response = client.post(add_url(device), key_pair_form(private_key=""))

    assert field_errors(response) == {"private_key": [KEY_REQUIRED]}


def test_it_refuses_a_private_key_it_cannot_read(client, device) -> None:
    response = client.post(add_url(device), key_pair_form(private_key="not a key"))

    assert field_errors(response) == {
        "private_key": ["The private key is not usable: not a usable private key (Invalid private key)."]
    }


def test_it_asks_for_the_passphrase_of_an_encrypted_private_key(client, device) -> None:
    encrypted = encrypted_private_text(new_key(), "pass phrase")

    response = client.post(add_url(device), key_pair_form(private_key=encrypted))

    assert field_errors(response) == {
        "private_key": ["The private key is not usable: the private key is encrypted: enter its passphrase."]
    }


def test_it_decrypts_an_encrypted_private_key_with_its_passphrase_and_stores_no_passphrase(client, device) -> None:
    key = new_key()
    encrypted = encrypted_private_text(key, "pass phrase")

    response = client.post(add_url(device), key_pair_form(private_key=encrypted, passphrase="pass phrase"))

    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    stored = asyncssh.import_private_key(endpoint.private_key)  # no passphrase needed any more
    assert public_text(stored) == public_text(key)
    assert "pass phrase" not in client.get(edit_url(endpoint)).content.decode()


def test_it_refuses_a_public_key_that_does_not_belong_to_the_private_key(client, device) -> None:
    data = key_pair_form(private_key=private_text(new_key()), public_key=public_text(new_key()))

    response = client.post(add_url(device), data)

    assert field_errors(response) == {"public_key": ["The public key does not belong to the private key."]}
    assert not Endpoint.objects.exists()


def test_it_refuses_a_public_key_it_cannot_read(client, device) -> None:
    data = key_pair_form(private_key=private_text(new_key()), public_key="ssh-ed25519 nonsense")

    response = client.post(add_url(device), data)

    assert field_errors(response) == {
        "public_key": ["The public key is not usable: not a usable public key (Invalid public key)."]
    }


def test_it_refuses_a_host_key_it_cannot_read(client, device) -> None:
    response = client.post(add_url(device), ssh_form(host_key="plc.local ssh-ed25519 nonsense"))

    assert field_errors(response) == {
        "host_key": ["The host key is not usable: not a usable public key (Invalid public key)."]
    }


def test_it_refuses_a_private_key_given_as_the_host_key(client, device) -> None:
    response = client.post(add_url(device), ssh_form(host_key=private_text(new_key())))

    assert field_errors(response) == {
        "host_key": ["The host key is not usable: this is a private key; paste the public key here."]
    }


def test_it_accepts_an_uploaded_private_key_file(client, device) -> None:
    key = new_key("ecdsa-sha2-nistp256")
    upload = SimpleUploadedFile("id_ecdsa", private_text(key).encode(), content_type="application/octet-stream")

    response = client.post(add_url(device), key_pair_form(private_key_file=upload))

    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    assert endpoint.credentials_type == CredentialsType.KEY_PAIR
    assert public_text(asyncssh.import_private_key(endpoint.private_key)) == public_text(key)
    assert endpoint.public_key == public_text(key)


def test_it_refuses_an_uploaded_file_that_is_binary(client, device) -> None:
    upload = SimpleUploadedFile("id_ed25519", b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary", content_type="image/png")

    response = client.post(add_url(device), key_pair_form(private_key_file=upload))

    errors = field_errors(response)
    assert errors["private_key_file"] == ["The file is not a text key file."]
    assert not Endpoint.objects.exists()


# --- what the page stores and shows ------------------------------------------------------


def test_it_adds_an_ssh_endpoint_with_its_password_encrypted_at_rest(client, device) -> None:
    response = client.post(add_url(device), ssh_form())

    assert response.status_code == 302
    assert response.url == reverse("remote-access", args=[device.pk])
    endpoint = Endpoint.objects.get()
    assert (endpoint.protocol, endpoint.credentials_type) == (Protocol.SSH, CredentialsType.USER_PASS)
    assert (endpoint.hostname, endpoint.port, endpoint.username) == ("10.0.0.5", 22, "pi")
    assert endpoint.password == PASSWORD
    raw = stored_column(endpoint, "password")
    assert raw and PASSWORD not in raw


def test_it_never_renders_the_stored_password_back(client, device) -> None:
    client.post(add_url(device), ssh_form())
    endpoint = Endpoint.objects.get()

    page = client.get(edit_url(endpoint)).content.decode()

    assert PASSWORD not in page
    assert "A password is stored; leave empty to keep it." in page


def test_it_keeps_the_stored_password_when_the_edit_leaves_it_blank(client, ssh_endpoint) -> None:
    response = client.post(edit_url(ssh_endpoint), ssh_form(password="", hostname="10.0.0.9"))

    assert response.status_code == 302
    ssh_endpoint.refresh_from_db()
    assert ssh_endpoint.password == "s3cret-ssh-password"
    assert ssh_endpoint.hostname == "10.0.0.9"


def test_it_generates_a_key_pair_and_shows_its_public_key_on_the_edit_page(client, ssh_endpoint) -> None:
    response = client.post(edit_url(ssh_endpoint), key_pair_form(generate_key_pair="on"))

    assert response.status_code == 302
    assert response.url == edit_url(ssh_endpoint)
    ssh_endpoint.refresh_from_db()
    assert ssh_endpoint.credentials_type == CredentialsType.KEY_PAIR
    assert ssh_endpoint.password == ""
    stored = asyncssh.import_private_key(ssh_endpoint.private_key)
    assert stored.get_algorithm() == "ssh-ed25519"
    assert ssh_endpoint.public_key.split()[:2] == public_text(stored).split()[:2]
    page = client.get(response.url).content.decode()
    assert ssh_endpoint.public_key.split()[1] in page
    assert "A new key pair was generated" in page


def test_it_never_renders_the_stored_private_key_back(client, key_pair_endpoint) -> None:
    page = client.get(edit_url(key_pair_endpoint)).content.decode()

    assert "PRIVATE KEY" not in page
    body = "".join(key_pair_endpoint.private_key.splitlines()[1:-1])
    assert body[:40] not in page
    assert "A private key is stored; leave empty to keep it." in page


def test_it_keeps_the_stored_private_key_when_the_edit_leaves_it_blank(client, key_pair_endpoint) -> None:
    before = key_pair_endpoint.private_key

    response = client.post(
        edit_url(key_pair_endpoint), key_pair_form(public_key=key_pair_endpoint.public_key, port="2222")
    )

    assert response.status_code == 302
    key_pair_endpoint.refresh_from_db()
    assert key_pair_endpoint.private_key == before
    assert key_pair_endpoint.port == 2222


@pytest.mark.parametrize(
    ("public_key", "message"),
    [
        (None, "The public key does not belong to the private key."),
        ("ssh-ed25519 nonsense", "The public key is not usable: not a usable public key (Invalid public key)."),
    ],
    ids=["another key's public key", "unreadable text"],
)
def test_it_checks_the_public_key_against_the_stored_private_key_on_edit(
    client, key_pair_endpoint, public_key: str | None, message: str
) -> None:
    stored_public = key_pair_endpoint.public_key
    given = public_key or public_text(new_key())

    response = client.post(edit_url(key_pair_endpoint), key_pair_form(public_key=given))

    key_pair_endpoint.refresh_from_db()
    assert key_pair_endpoint.public_key == stored_public
    assert field_errors(response) == {"public_key": [message]}


def test_it_stores_a_known_hosts_line_as_a_plain_host_key(client, device) -> None:
    public = public_text(new_key())

    response = client.post(add_url(device), ssh_form(host_key=f"plc.local,10.0.0.5 {public}\n"))

    assert response.status_code == 302
    assert Endpoint.objects.get().host_key == public


def test_it_sets_a_vnc_endpoint_with_a_password_to_password_only(client, device) -> None:
    data = {"name": "HMI", "hostname": "10.0.0.67", "port": "5900", "password": "vnc-pass", "username": "x"}

    response = client.post(add_url(device, "vnc"), data)

    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    assert (endpoint.protocol, endpoint.credentials_type) == (Protocol.VNC, CredentialsType.PASS_ONLY)
    assert endpoint.password == "vnc-pass"
    assert endpoint.username == ""


def test_it_sets_a_vnc_endpoint_without_a_password_to_none(client, device) -> None:
    response = client.post(add_url(device, "vnc"), {"name": "HMI", "hostname": "10.0.0.67", "port": "5900"})

    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    assert endpoint.credentials_type == CredentialsType.NONE
    assert endpoint.password == ""


def test_it_keeps_the_stored_vnc_password_when_the_edit_leaves_it_blank(client, vnc_endpoint) -> None:
    data = {"name": vnc_endpoint.name, "hostname": "10.0.0.68", "port": "5901", "password": ""}

    assert client.post(edit_url(vnc_endpoint), data).status_code == 302

    vnc_endpoint.refresh_from_db()
    assert (vnc_endpoint.credentials_type, vnc_endpoint.password) == (CredentialsType.PASS_ONLY, "vnc-pass")
    assert "vnc-pass" not in client.get(edit_url(vnc_endpoint)).content.decode()


@pytest.mark.parametrize(("slug", "protocol"), [("telnet", Protocol.TELNET), ("passthrough", Protocol.PASSTHROUGH)])
def test_it_ignores_credentials_sent_for_telnet_and_passthrough(client, device, slug: str, protocol) -> None:
    data = ssh_form(
        name="Console",
        port="23",
        credentials_type=CredentialsType.KEY_PAIR.value,
        private_key=private_text(new_key()),
        public_key="ssh-ed25519 nonsense",
        host_key="nonsense",
    )

    response = client.post(add_url(device, slug), data)

    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    assert endpoint.protocol == protocol
    assert endpoint.credentials_type == CredentialsType.NONE
    assert (endpoint.username, endpoint.password, endpoint.private_key) == ("", "", "")
    assert (endpoint.public_key, endpoint.host_key) == ("", "")


@pytest.mark.parametrize(("slug", "port"), [("ssh", "22"), ("telnet", "23"), ("vnc", "5900"), ("passthrough", "22")])
def test_it_offers_the_usual_port_of_the_protocol_on_a_new_endpoint(client, device, slug: str, port: str) -> None:
    page = client.get(add_url(device, slug)).content.decode()

    assert f'name="port" value="{port}"' in page


@pytest.mark.parametrize(("hostname", "address"), [("::1", "[::1]:22"), ("[fd00::5]", "[fd00::5]:22")])
def test_it_accepts_an_ipv6_literal_and_lists_it_in_brackets_with_the_port(
    client, device, hostname: str, address: str
) -> None:
    response = client.post(add_url(device), ssh_form(hostname=hostname))

    assert response.status_code == 302
    assert Endpoint.objects.get().hostname == hostname
    listing = client.get(reverse("remote-access", args=[device.pk])).content.decode()
    assert f'<td class="mono">{address}</td>' in listing


def test_it_strips_whitespace_around_the_host_name(client, device) -> None:
    response = client.post(add_url(device), ssh_form(hostname="  plc-1.local \t"))

    assert response.status_code == 302
    assert Endpoint.objects.get().hostname == "plc-1.local"
