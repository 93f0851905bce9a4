"""Who sent a push: the peer address, or the client a trusted proxy says it forwarded for."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from esms_callbacks.variables import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]
) -> Address | None:
    """The address a push came from; None if it cannot be told (a unix socket, garbage).

    X-Forwarded-For is read only when the peer is a trusted proxy, right to left: the first
    address that is not a trusted proxy is the client (anything further left is whatever the
    client chose to send).
    """
    address = _parse(peer)
    if address is None or not _within(address, trusted_proxies):
        return address
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        hop_address = _parse(hop)
        if hop_address is None:
            return None  # a proxy we trust wrote something we cannot read: refuse to guess
        if not _within(hop_address, trusted_proxies):
            return hop_address
        address = hop_address
    return address


def allowed(address: Address | None, allow_from: Sequence[Network]) -> bool:
    """Whether pushes from `address` are taken: any source when no allow-list is set."""
    if not allow_from:
        return True
    return address is not None and _within(address, allow_from)


def _within(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def _parse(text: str | None) -> Address | None:
    """'203.0.113.9', '203.0.113.9:5555', '2001:db8::1', '[2001:db8::1]:443' -> the address."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port (a bare v6 address has several colons)
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # ::ffff:203.0.113.7 is 203.0.113.7
    return address
