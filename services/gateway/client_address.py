"""The client's address as the edge sees it.

Behind an ingress or a load balancer every connection comes from the proxy, so the TCP peer says
nothing about the client; the proxy records the address it saw in ``X-Forwarded-For`` (or the
standard ``Forwarded``). Anyone can send those headers, though, so they are read only when the TCP
peer is one of the trusted proxies, and then only the part the trusted proxies wrote: the chain is
walked from the right (each proxy appends the address it saw), trusted hops are skipped, and the
first untrusted address is the client. Whatever lies left of it the client wrote itself.

Only the configured header is read: a proxy that appends to one of them passes the other through
untouched, so reading both would let a client name its own address in the one the proxy ignores.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from typing import Literal

from aiohttp import web

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ProxyHeader = Literal["x-forwarded-for", "forwarded"]

# More hops than any real proxy chain: a longer header is cut to its rightmost (the trusted) part.
MAX_HOPS = 32


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """CIDRs (or single addresses) of trusted proxies; a malformed one raises ValueError naming it."""
    networks = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as error:
            raise ValueError(f"trusted proxy {text!r} is not an address or a CIDR: {error}") from error
    return networks


def parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:443``, ``2001:db8::1``,
    quoted in ``Forwarded``); None for anything else (``unknown``, obfuscated identifiers, garbage)."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    if "%" in text:
        return None  # a zone index names an interface of the proxy's host, not a client
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # one key per client whether it came over IPv4 or a dual-stack socket
    return address


def forwarded_for(values: Sequence[str]) -> list[str]:
    """The ``for=`` values of RFC 7239 ``Forwarded`` headers, in order (an element without one
    counts as an unknown hop, so it cannot shift the chain)."""
    hops: list[str] = []
    for header in values:
        for element in header.split(","):
            found = ""
            for pair in element.split(";"):
                name, sep, value = pair.partition("=")
                if sep and name.strip().lower() == "for":
                    found = value
                    break
            hops.append(found)
    return hops


def x_forwarded_for(values: Sequence[str]) -> list[str]:
    """The hops of ``X-Forwarded-For`` headers; several headers read as one list joined in order."""
    return [hop for header in values for hop in header.split(",")]


class ClientAddress:
    """Finds a request's client address; built once from the settings."""

    def __init__(self, trusted: Sequence[IPNetwork], header: ProxyHeader = "x-forwarded-for") -> None:
        self.trusted = tuple(trusted)
        self.header = header

    def is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)

    def _hops(self, request: web.Request) -> list[str]:
        if self.header == "forwarded":
            return forwarded_for(request.headers.getall("Forwarded", []))
        return x_forwarded_for(request.headers.getall("X-Forwarded-For", []))

    def of(self, request: web.Request) -> str | None:
        """The client's address: the TCP peer, unless it is a trusted proxy that says otherwise."""
        peer_text = request.remote
        if not self.trusted or peer_text is None:
            return peer_text  # the common case costs one check
        peer = parse_address(peer_text)
        if peer is None or not self.is_trusted(peer):
            return str(peer) if peer is not None else peer_text
        client = peer
        for hop in reversed(self._hops(request)[-MAX_HOPS:]):
            address = parse_address(hop)
            if address is None:
                # A trusted proxy wrote something that is not an address: the nearest hop we can
                # vouch for stands in (a shared throttle is better than one keyed by garbage).
                log.debug("unparseable forwarded hop %r from trusted %s", hop[:64], client)
                break
            client = address
            if not self.is_trusted(address):
                break
        return str(client)
