"""CS page sessions: signed, expiring cookies bound to the key used to sign in; logout revokes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from serving.config import Settings
from serving.deps import SESSION_COOKIE, issue_session, verify_session
from tests.serving_fakes import ADMIN_KEY, API_KEY, Company, app_for, scored_company

SECRET = "s" * 40


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Company:
    return scored_company(tmp_path_factory.mktemp("page") / "co", n_accounts=12)


@pytest.fixture()
def client(company: Company) -> Iterator[TestClient]:
    with TestClient(app_for(company, session_secret=SECRET), follow_redirects=False) as c:
        yield c


def _settings(**overrides: object) -> Settings:
    values: dict = {"api_key": API_KEY, "admin_key": ADMIN_KEY, "session_secret": SECRET, **overrides}
    return Settings(**values)


def _sign_in(client: TestClient, key: str = API_KEY) -> str:
    r = client.post("/login", data={"key": key})
    assert r.status_code == 303 and r.headers["location"] == "/"
    return r.cookies[SESSION_COOKIE]


def _page(client: TestClient, token: str | None) -> int:
    client.cookies.clear()
    if token is not None:
        client.cookies.set(SESSION_COOKIE, token)
    return client.get("/").status_code


def test_login_sets_a_signed_expiring_cookie_with_strict_flags(client: TestClient) -> None:
    r = client.post("/login", data={"key": API_KEY})
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header and "max-age=43200" in header
    token = r.cookies[SESSION_COOKIE]
    assert API_KEY not in token and ADMIN_KEY not in token
    session = verify_session(_settings(), token)
    assert session is not None and session.role == "reader"
    assert session.expires - session.issued == 12 * 3600
    assert _page(client, token) == 200
    assert _page(client, None) == 303  # no cookie: sent to sign in


def test_cookie_secure_setting(company: Company) -> None:
    with TestClient(app_for(company, cookie_secure=True), follow_redirects=False) as c:
        assert "secure" in c.post("/login", data={"key": API_KEY}).headers["set-cookie"].lower()


def test_each_login_gets_its_own_token(client: TestClient) -> None:
    assert _sign_in(client) != _sign_in(client)


def test_admin_key_signs_in_as_admin(client: TestClient) -> None:
    session = verify_session(_settings(), _sign_in(client, ADMIN_KEY))
    assert session is not None and session.role == "admin"


def test_expired_token_rejected(client: TestClient) -> None:
    settings = _settings()
    stale = issue_session(settings, "reader", now=time.time() - 12 * 3600 - 5)
    assert verify_session(settings, stale) is None
    assert _page(client, stale) == 303
    fresh = issue_session(settings, "reader", now=time.time() - 12 * 3600 + 60)
    assert _page(client, fresh) == 200  # just inside its lifetime


def test_shorter_lifetime_setting_shortens_existing_sessions() -> None:
    token = issue_session(_settings(session_hours=24), "reader", now=time.time() - 3600)
    assert verify_session(_settings(session_hours=24), token) is not None
    assert verify_session(_settings(session_hours=12), token) is None


def test_token_from_the_future_rejected() -> None:
    settings = _settings()
    assert verify_session(settings, issue_session(settings, "reader", now=time.time() + 3600)) is None


@pytest.mark.parametrize("part", [1, 2, 3, 4, 5])
def test_tampered_token_rejected(client: TestClient, part: int) -> None:
    token = _sign_in(client)
    parts = token.split(".")
    if part == 1:
        parts[1] = "admin"  # claim the other role
    elif part in (2, 3):
        parts[part] = str(int(parts[part]) + 10 * 24 * 3600)  # move issued / extend expiry
    else:
        parts[part] = ("0" if parts[part][0] != "0" else "1") + parts[part][1:]
    forged = ".".join(parts)
    assert verify_session(_settings(), forged) is None
    assert _page(client, forged) == 303


@pytest.mark.parametrize("bad", ["", "x", "v1.reader.1.2.3", "v2." + "a." * 4 + "b", "." * 5, "v1" + "." * 5])
def test_malformed_token_rejected(bad: str) -> None:
    assert verify_session(_settings(), bad) is None


def test_token_signed_with_another_secret_rejected() -> None:
    token = issue_session(_settings(), "reader")
    assert verify_session(_settings(session_secret="t" * 40), token) is None


def test_token_for_an_old_key_rejected(company: Company) -> None:
    token = issue_session(_settings(), "reader")
    assert verify_session(_settings(api_key="rotated-read-key"), token) is None
    assert verify_session(_settings(admin_key="rotated-admin-key"), token) is not None  # other key
    with TestClient(
        app_for(company, session_secret=SECRET, api_key="rotated-read-key"), follow_redirects=False
    ) as c:
        assert _page(c, token) == 303


def test_without_a_secret_tokens_live_with_the_process() -> None:
    settings = _settings(session_secret=None)
    token = issue_session(settings, "reader")
    assert verify_session(settings, token) is not None  # same process: same random secret
    assert verify_session(_settings(), token) is None


def test_short_session_secret_refused() -> None:
    with pytest.raises(ValueError, match="session_secret"):
        _settings(session_secret="short")


def test_logout_clears_cookie_and_revokes_the_token(client: TestClient) -> None:
    token = _sign_in(client)
    other = _sign_in(client)
    client.cookies.set(SESSION_COOKIE, token)
    r = client.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    header = r.headers["set-cookie"].lower()
    assert header.startswith(f"{SESSION_COOKIE}=") and "max-age=0" in header
    assert _page(client, token) == 303  # a copy of the cookie kept from before logout
    assert _page(client, other) == 200  # another sign-in is not affected
    client.cookies.clear()
    assert client.post("/logout").status_code == 303  # logging out without a session is harmless
