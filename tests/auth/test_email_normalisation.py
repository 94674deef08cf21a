"""One address, one account: emails are NFKC-normalised and lower-cased, and mixed-script parts are refused."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from contracts.auth import AddTenantUser, Login, Register
from tests.auth.helpers import PASSWORD, get, login, post, register, registered_and_logged_in
from tests.support import Gateway

CYRILLIC_A = "\u0430"
JAPANESE = "\u65e5\u672c\u8a9e\u3072\u3089\u304c\u306a"  # Han and Hiragana: one writing system


def full_width(text: str) -> str:
    """The full-width twin of printable ASCII (U+FF01..U+FF5E), as East Asian keyboards type it."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


def fresh_local_part() -> str:
    return f"admin-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Ada.Lovelace@Example.com", "ada.lovelace@example.com"),
        (full_width("admin") + "@example.com", "admin@example.com"),
        (full_width("ADMIN") + "@example.com", "admin@example.com"),
        ("admin" + full_width("@example.com"), "admin@example.com"),
        ("\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427@example.com", "admin@example.com"),  # mathematical bold
        ("Jos\u00e9@B\u00fccher.de", "jos\u00e9@b\u00fccher.de"),
        ("\u041f\u0420\u0418\u041c\u0415\u0420@example.com", "\u043f\u0440\u0438\u043c\u0435\u0440@example.com"),
        (f"{JAPANESE}@example.com", f"{JAPANESE}@example.com"),
        ("user+tag@example.com", "user+tag@example.com"),
    ],
)
def test_every_request_that_carries_an_email_stores_one_canonical_form(typed: str, stored: str) -> None:
    assert Register(email=typed, password=PASSWORD).email == stored
    assert Login(email=typed, password=PASSWORD).email == stored
    assert AddTenantUser(email=typed, password=PASSWORD).email == stored


@pytest.mark.parametrize(
    "address",
    [
        f"{CYRILLIC_A}dmin@example.com",  # Cyrillic a among Latin letters
        f"admin@ex{CYRILLIC_A}mple.com",  # the same in a domain label
        "p\u0430yp\u0430l@example.com",
        "\u65e5\u672cabc@example.com",  # Han beside Latin
        "user\u0660\u0661@example.com",  # Arabic-Indic digits in a Latin part
        "\u13da\u13a2\u13b5@example.com",  # Cherokee: a script of Latin lookalikes, not in everyday use
        "snow\u2603@example.com",  # a symbol, not a letter or digit
    ],
)
def test_mixed_script_and_non_letter_addresses_are_refused(address: str) -> None:
    for model in (Register, Login, AddTenantUser):
        with pytest.raises(ValidationError) as raised:
            model(email=address, password=PASSWORD)
        assert [error["loc"] for error in raised.value.errors()] == [("email",)]


async def test_the_full_width_twin_of_a_registered_email_is_taken_and_logs_in(system: Gateway) -> None:
    local = fresh_local_part()
    registered = await register(system, f"{local}@example.com")
    twin = full_width(local.upper()) + "@example.com"

    status, body, _ = await post(system, "/auth/register", {"email": twin, "password": PASSWORD})
    assert status == 409 and body["error"]["code"] == "EMAIL_TAKEN"

    tokens = await login(system, twin)
    assert tokens["user"]["id"] == registered["user"]["id"]
    assert tokens["user"]["email"] == f"{local}@example.com"


async def test_an_admin_cannot_add_the_full_width_twin_of_an_existing_user(system: Gateway) -> None:
    existing = fresh_local_part()
    await register(system, f"{existing}@example.com")
    _, admin = await registered_and_logged_in(system)
    status, body, _ = await post(
        system,
        "/tenants/me/users",
        {"email": full_width(existing) + "@example.com", "password": PASSWORD},
        token=admin["access_token"],
    )
    assert status == 409 and body["error"]["code"] == "EMAIL_TAKEN"


async def test_a_mixed_script_local_part_is_a_422_naming_the_email_field(system: Gateway) -> None:
    local = fresh_local_part()
    await register(system, f"{local}@example.com")
    lookalike = CYRILLIC_A + local[1:] + "@example.com"
    for path in ("/auth/register", "/auth/login"):
        status, body, _ = await post(system, path, {"email": lookalike, "password": PASSWORD})
        assert status == 422, body
        assert body["error"]["code"] == "VALIDATION_FAILED"
        assert [detail["field"] for detail in body["error"]["details"]] == ["email"]


async def test_an_ordinary_address_is_stored_lower_case_and_logs_in_as_typed(system: Gateway) -> None:
    registered = await register(system, "Ada.Lovelace@Example.com")
    assert registered["user"]["email"] == "ada.lovelace@example.com"
    tokens = await login(system, "Ada.Lovelace@Example.com")
    assert tokens["user"]["id"] == registered["user"]["id"]
    status, me = await get(system, "/users/me", tokens["access_token"])
    assert status == 200 and me["data"]["email"] == "ada.lovelace@example.com"
