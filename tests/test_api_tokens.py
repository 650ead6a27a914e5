from django.urls import reverse

from portal.auth import user_for_authorization
from portal import throttle
from portal.models import ApiToken

# The address the tests present credentials from.
CLIENT = "127.0.0.1"


def test_a_user_creates_a_token_that_is_shown_once_and_works(client, operator):
    client.force_login(operator)
    response = client.post(reverse("profile"), {"name": "laptop"})
    page = response.content.decode()
    token = page.split('<code id="new-token" class="secret">')[1].split("</code>")[0]
    assert response.headers["Cache-Control"] == "no-store"
    assert user_for_authorization(f"Bearer {token}", CLIENT) == operator
    assert token not in client.get(reverse("profile")).content.decode()
    stored = ApiToken.objects.get(user=operator)
    assert stored.name == "laptop" and token not in stored.token_hash
    assert stored.last_used is not None


def test_a_revoked_token_no_longer_works(client, operator):
    record, token = ApiToken.issue(operator, "ci")
    client.force_login(operator)
    response = client.post(reverse("revoke-token", args=[record.pk]), follow=True)
    assert "Token “ci” revoked." in response.content.decode()
    assert user_for_authorization(f"Bearer {token}", CLIENT) is None


def test_nobody_revokes_another_users_token(client, operator, outsider):
    record, token = ApiToken.issue(operator, "ci")
    client.force_login(outsider)
    assert client.post(reverse("revoke-token", args=[record.pk])).status_code == 404
    assert user_for_authorization(f"Bearer {token}", CLIENT) == operator


def test_a_token_of_an_inactive_user_does_not_work(operator):
    _, token = ApiToken.issue(operator, "ci")
    operator.is_active = False
    operator.save()
    assert user_for_authorization(f"Bearer {token}", CLIENT) is None


def test_basic_auth_takes_the_users_password_with_or_without_a_tenant(operator):
    import base64

    for name in ["operator", "t12345/operator"]:
        header = "Basic " + base64.b64encode(f"{name}:operator-pass-1".encode()).decode()
        assert user_for_authorization(header, CLIENT) == operator
    wrong = "Basic " + base64.b64encode(b"operator:nope").decode()
    assert user_for_authorization(wrong, CLIENT) is None
    assert user_for_authorization("Basic !!!", CLIENT) is None
    assert user_for_authorization("Digest abc", CLIENT) is None


def test_a_token_name_is_required(client, operator):
    client.force_login(operator)
    page = client.post(reverse("profile"), {"name": ""}).content.decode()
    assert "This field is required." in page
    assert not ApiToken.objects.exists()


def test_guessing_tokens_locks_the_address_out_even_for_a_valid_token(client, operator):
    _, token = ApiToken.issue(operator, "ci")
    url = "/service/remoteaccess/devices/1/configurations"
    for number in range(throttle.API_TOKEN.max_failures):
        guess = client.get(url, HTTP_AUTHORIZATION=f"Bearer rag_guess{number}")
        assert guess.status_code == 401
    locked = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert locked.status_code == 429
    assert locked.json()["error"] == "too many unknown API tokens from this address: try again in 5 minutes"
    # Another address is not locked out.
    assert user_for_authorization(f"Bearer {token}", "127.0.0.2") == operator
