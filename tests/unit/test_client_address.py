"""The client address at the edge: forwarded headers count only from trusted proxies."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from services.gateway.client_address import ClientAddress, parse_address, parse_networks
from services.gateway.settings import GatewaySettings

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:ffff::/48"])


def request_from(peer: str, headers: list[tuple[str, str]] | None = None) -> web.Request:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
    return make_mocked_request("POST", "/api/v5/auth/login", headers=CIMultiDict(headers or []), transport=transport)


def test_nobody_is_trusted_by_default() -> None:
    finder = ClientAddress([])
    assert finder.of(request_from("203.0.113.9", [("X-Forwarded-For", "198.51.100.1")])) == "203.0.113.9"


def test_a_spoofed_header_from_an_untrusted_peer_is_ignored() -> None:
    finder = ClientAddress(PROXIES)
    request = request_from("203.0.113.9", [("X-Forwarded-For", "10.0.0.1, 198.51.100.1")])
    assert finder.of(request) == "203.0.113.9"


def test_the_first_untrusted_hop_from_the_right_is_the_client() -> None:
    finder = ClientAddress(PROXIES)
    # The client wrote "1.1.1.1" itself; the edge proxy appended the real peer, an inner proxy its own.
    request = request_from("10.0.0.5", [("X-Forwarded-For", "1.1.1.1, 198.51.100.7, 10.1.2.3")])
    assert finder.of(request) == "198.51.100.7"


def test_several_headers_read_as_one_chain() -> None:
    finder = ClientAddress(PROXIES)
    request = request_from("10.0.0.5", [("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "198.51.100.7")])
    assert finder.of(request) == "198.51.100.7"


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert ClientAddress(PROXIES).of(request_from("10.0.0.5")) == "10.0.0.5"


def test_only_trusted_hops_give_the_leftmost() -> None:
    finder = ClientAddress(PROXIES)
    assert finder.of(request_from("10.0.0.5", [("X-Forwarded-For", "10.9.9.9, 10.0.0.4")])) == "10.9.9.9"


def test_forwarded_header_when_configured_and_xff_then_ignored() -> None:
    finder = ClientAddress(PROXIES, "forwarded")
    headers = [
        ("X-Forwarded-For", "192.0.2.66"),  # passed through by a proxy that writes Forwarded: the client's claim
        ("Forwarded", 'for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.9;by=10.0.0.1'),
    ]
    assert finder.of(request_from("10.0.0.5", headers)) == "2001:db8:cafe::17"


def test_xff_mode_ignores_forwarded() -> None:
    finder = ClientAddress(PROXIES)
    assert finder.of(request_from("10.0.0.5", [("Forwarded", "for=192.0.2.66")])) == "10.0.0.5"


@pytest.mark.parametrize(
    "header",
    [
        "",
        ",,,",
        "unknown",
        "not an address, \x7f, 999.1.1.1",
        "[2001:db8::1",
        "fe80::1%eth0",
        "x" * 8000,
        ", ".join(["10.0.0.1"] * 500),
    ],
)
def test_malformed_headers_fall_back_to_a_trusted_address(header: str) -> None:
    address = ClientAddress(PROXIES).of(request_from("10.0.0.5", [("X-Forwarded-For", header)]))
    assert address is not None and parse_address(address) is not None
    assert any(parse_address(address) in network for network in PROXIES)


def test_a_malformed_hop_stops_the_walk_left_of_a_good_one() -> None:
    finder = ClientAddress(PROXIES)
    assert finder.of(request_from("10.0.0.5", [("X-Forwarded-For", "1.1.1.1, garbage, 10.0.0.7")])) == "10.0.0.7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.7:8080", "198.51.100.7"),
        ("[2001:DB8::1]:443", "2001:db8::1"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ('"198.51.100.7"', "198.51.100.7"),
        ("_hidden", None),
    ],
)
def test_address_forms(text: str, expected: str | None) -> None:
    parsed = parse_address(text)
    assert (str(parsed) if parsed is not None else None) == expected


def test_an_ipv4_mapped_peer_matches_an_ipv4_network() -> None:
    finder = ClientAddress(PROXIES)
    assert finder.of(request_from("::ffff:10.0.0.5", [("X-Forwarded-For", "198.51.100.7")])) == "198.51.100.7"


def test_settings_parse_comma_separated_cidrs_and_refuse_bad_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODITECT_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    assert GatewaySettings().trusted_proxies == ["10.0.0.0/8", "192.168.1.1/32"]
    monkeypatch.setenv("CODITECT_TRUSTED_PROXIES", "10.0.0.1/8")
    with pytest.raises(ValueError, match="host bits"):
        GatewaySettings()
    monkeypatch.setenv("CODITECT_TRUSTED_PROXIES", '["10.0.0.0/8", "::1"]')
    assert GatewaySettings().trusted_proxies == ["10.0.0.0/8", "::1/128"]
    monkeypatch.setenv("CODITECT_TRUSTED_PROXIES", "")
    assert GatewaySettings().trusted_proxies == []
