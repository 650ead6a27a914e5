from django.urls import reverse

from portal.auth import user_for_authorization
from portal.models import ApiToken


def test_a_user_creates_a_token_that_is_shown_once_and_works(client, operator):
    client.force_login(operator)
    response = client.post(reverse("profile"), {"name": "laptop"})
    page = response.content.decode()
    token = page.split('<code id="new-token" class="secret">')[1].split("</code>")[0]
    assert response.headers["Cache-Control"] == "no-store"
    assert user_for_authorization(f"Bearer {token}") == operator
    assert token not in client.get(reverse("profile")).content.decode()
    stored = ApiToken.objects.get(user=operator)
    assert stored.name == "laptop" and token not in stored.token_hash
    assert stored.last_used is not None


def test_a_revoked_token_no_longer_works(client, operator):
    record, token = ApiToken.issue(operator, "ci")
    client.force_login(operator)
    response = client.post(reverse("revoke-token", args=[record.pk]), follow=True)
    assert "Token “ci” revoked." in response.content.decode()
    assert user_for_authorization(f"Bearer {token}") is None


def test_nobody_revokes_another_users_token(client, operator, outsider):
    record, token = ApiToken.issue(operator, "ci")
    client.force_login(outsider)
    assert client.post(reverse("revoke-token", args=[record.pk])).status_code == 404
    assert user_for_authorization(f"Bearer {token}") == operator


def test_a_token_of_an_inactive_user_does_not_work(operator):
    _, token = ApiToken.issue(operator, "ci")
    operator.is_active = False
    operator.save()
    assert user_for_authorization(f"Bearer {token}") is None


def test_basic_auth_takes_the_users_password_with_or_without_a_tenant(operator):
    import base64

    for name in ["operator", "t12345/operator"]:
        header = "Basic " + base64.b64encode(f"{name}:operator-pass-1".encode()).decode()
        assert user_for_authorization(header) == operator
    wrong = "Basic " + base64.b64encode(b"operator:nope").decode()
    assert user_for_authorization(wrong) is None
    assert user_for_authorization("Basic !!!") is None
    assert user_for_authorization("Digest abc") is None


def test_a_token_name_is_required(client, operator):
    client.force_login(operator)
    page = client.post(reverse("profile"), {"name": ""}).content.decode()
    assert "This field is required." in page
    assert not ApiToken.objects.exists()
