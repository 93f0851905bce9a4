"""Who pushed: the peer, or the client a trusted proxy names; the allow-list."""

from __future__ import annotations

import ipaddress

import pytest

from esms_callbacks.push.sources import allowed, client_address
from esms_callbacks.variables import networks as _networks

PROXIES = _networks("10.0.0.1, 10.0.0.2")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.9", ["203.0.113.7"], "198.51.100.9"),  # not a proxy: the header is ignored
        ("10.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("10.0.0.1", ["1.2.3.4, 203.0.113.7, 10.0.0.2"], "203.0.113.7"),  # right to left
        ("10.0.0.1", ["1.2.3.4", "203.0.113.7"], "203.0.113.7"),  # several headers
        ("10.0.0.1", ["203.0.113.7:5555"], "203.0.113.7"),  # a hop with its port
        ("10.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.1", ["2001:db8::1"], "2001:db8::1"),
        ("10.0.0.1", [], "10.0.0.1"),  # the proxy named nobody
        ("10.0.0.1", ["garbage, 203.0.113.7"], "203.0.113.7"),  # garbage further left: unread
        ("10.0.0.1", ["203.0.113.7, garbage"], None),  # a trusted proxy wrote garbage
        ("::ffff:198.51.100.9", [], "198.51.100.9"),
        (None, [], None),
    ],
)
def test_the_source_is_the_first_address_from_the_right_that_is_not_a_trusted_proxy(
    peer, forwarded, expected
):
    address = client_address(peer, forwarded, PROXIES)
    assert address == (ipaddress.ip_address(expected) if expected else None)


def test_the_allow_list_admits_only_its_networks_and_an_empty_one_admits_all():
    allow = _networks("203.0.113.0/24, 2001:db8::/32")
    assert allowed(ipaddress.ip_address("203.0.113.200"), allow)
    assert allowed(ipaddress.ip_address("2001:db8::5"), allow)
    assert not allowed(ipaddress.ip_address("198.51.100.1"), allow)
    assert not allowed(None, allow)
    assert allowed(None, ())
