"""Where the webhook may connect: the default refuses every non-public address, before
connecting, and an operator can allow an internal receiver on purpose.

Nothing here sends traffic anywhere but to the test receiver on 127.0.0.1: addresses are
refused before any connection, and names are resolved by a FakeResolver, never by DNS."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tests.unit.handlers.conftest import FakeResolver, Receiver
from workstream.errors import ConfigError, InvalidPayload
from workstream.handlers import HandlerTable
from workstream.handlers.netguard import (
    DestinationPolicy,
    DestinationRefused,
    is_public,
    literal_address,
)
from workstream.handlers.webhook import WebhookError, make_webhook_handler
from workstream.jobs.model import JobContext

JOB = JobContext("5e0c2a7d-1f3b-4d6e-8a9b-0c1d2e3f4a5b", "webhook", 1, 3, 1_700_000_000.0)

REFUSED_HOSTS = [
    "127.0.0.1",
    "127.1",  # the C library's short forms ...
    "2130706433",  # ... a single number ...
    "0x7f.1",  # ... hexadecimal ...
    "0177.0.0.1",  # ... and octal
    "0.0.0.0",
    "0",
    "localhost",
    "api.localhost",
    "10.0.0.5",
    "172.16.1.1",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",  # cloud metadata
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
    "198.18.0.1",
    "[::1]",
    "[::]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[::ffff:169.254.169.254]",
    "[::127.0.0.1]",  # IPv4-compatible
    "[fd00::1]",  # unique-local
    "[fc00::1]",
    "[fe80::1]",  # link-local
    "[fec0::1]",  # site-local
    "[ff02::1]",  # multicast
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_submission_refuses_a_literal_internal_destination(host: str) -> None:
    table = HandlerTable([make_webhook_handler()])
    with pytest.raises(InvalidPayload, match="loopback, private or reserved"):
        table.check_submission("webhook", {"url": f"http://{host}:8080/hook"})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "2130706433", "localhost", "[::1]"])
def test_the_handler_refuses_before_connecting(receiver: Receiver, host: str) -> None:
    """A job stored before the check (or under another policy) is refused when it runs:
    the receiver listening there sees nothing."""
    resolver = FakeResolver({})  # a literal or localhost never reaches the resolver
    handler = make_webhook_handler(resolver=resolver)
    with pytest.raises(WebhookError, match="refused to connect"):
        handler.fn({"url": f"http://{host}:{receiver.port}/ok"}, JOB)
    assert receiver.requests == []
    assert resolver.calls == []


@pytest.mark.parametrize(
    "answer",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["fd12:3456::1"],
        ["93.184.215.14", "127.0.0.1"],  # one bad answer refuses the name
    ],
)
def test_a_name_resolving_inside_is_refused_before_connecting(
    receiver: Receiver, answer: list[str]
) -> None:
    resolver = FakeResolver({"hooks.example": answer})
    handler = make_webhook_handler(resolver=resolver)
    # The name passes submission (no DNS there) and is refused when resolved.
    assert handler.validate is not None
    handler.validate({"url": f"http://hooks.example:{receiver.port}/ok"})
    with pytest.raises(WebhookError, match=r"refused to connect to http://hooks\.example"):
        handler.fn({"url": f"http://hooks.example:{receiver.port}/ok"}, JOB)
    assert receiver.requests == []
    assert resolver.calls == ["hooks.example"]


def test_a_name_that_does_not_resolve_could_not_connect() -> None:
    handler = make_webhook_handler(resolver=FakeResolver({}))
    with pytest.raises(WebhookError, match=r"^could not connect to https://nowhere\.example$"):
        handler.fn({"url": "https://nowhere.example/hook"}, JOB)


def test_allow_hosts_by_name_lets_an_internal_receiver_through(receiver: Receiver) -> None:
    resolver = FakeResolver({"hooks.internal": ["127.0.0.1"], "other.internal": ["127.0.0.1"]})
    handler = make_webhook_handler(allow_hosts=["Hooks.Internal"], resolver=resolver)

    assert handler.fn({"url": f"http://hooks.internal:{receiver.port}/ok"}, JOB) == {"status": 200}
    with pytest.raises(WebhookError, match="refused"):
        handler.fn({"url": f"http://other.internal:{receiver.port}/ok"}, JOB)
    assert len(receiver.requests) == 1


def test_allow_hosts_by_network(receiver: Receiver) -> None:
    handler = make_webhook_handler(allow_hosts=["127.0.0.0/8"])
    assert handler.validate is not None
    handler.validate({"url": f"http://127.0.0.1:{receiver.port}/ok"})
    assert handler.fn({"url": f"http://127.0.0.1:{receiver.port}/ok"}, JOB) == {"status": 200}


def test_deny_networks_wins_over_allow_hosts(receiver: Receiver) -> None:
    resolver = FakeResolver({"hooks.internal": ["127.0.0.1"]})
    handler = make_webhook_handler(
        allow_hosts=["127.0.0.1", "hooks.internal"],
        deny_networks=["127.0.0.0/8"],
        resolver=resolver,
    )
    for host in ("127.0.0.1", "hooks.internal"):
        with pytest.raises(WebhookError, match="refused"):
            handler.fn({"url": f"http://{host}:{receiver.port}/ok"}, JOB)
    assert receiver.requests == []


def test_deny_networks_can_refuse_a_public_range() -> None:
    resolver = FakeResolver({"hooks.example": ["93.184.215.14"]})
    handler = make_webhook_handler(deny_networks=["93.184.215.0/24"], resolver=resolver)
    table = HandlerTable([handler])
    with pytest.raises(InvalidPayload, match="may not reach"):
        table.check_submission("webhook", {"url": "http://93.184.215.14/"})
    with pytest.raises(WebhookError, match="refused"):  # before any connection
        handler.fn({"url": "http://hooks.example/"}, JOB)


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"allow_hosts": ["not a host!"]}, "WEBHOOK_ALLOW_HOSTS"),
        ({"allow_hosts": ["10.0.0.0/33"]}, "WEBHOOK_ALLOW_HOSTS"),
        ({"deny_networks": ["internal.example"]}, "WEBHOOK_DENY_NETWORKS"),
        ({"deny_networks": ["::1/129"]}, "WEBHOOK_DENY_NETWORKS"),
    ],
)
def test_a_bad_policy_entry_is_a_start_up_error(options: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        make_webhook_handler(**options)


# -- the address rules themselves -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("example.com", None),
        ("1e100.net", None),
        ("", None),
    ],
)
def test_literal_address_reads_every_spelling(text: str, expected: str | None) -> None:
    address = literal_address(text)
    assert (None if address is None else str(address)) == expected


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450::1"]
)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "127.0.0.1",
        "10.255.255.255",
        "100.127.0.1",
        "192.0.0.8",
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "239.255.255.250",
        "::",
        "::1",
        "::ffff:10.0.0.1",
        "2001:db8::1",
        "fe80::1%1",
        "ff05::2",
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b:1::1",
    ],
)
def test_special_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


def test_policy_check_literal_lets_a_name_pass_for_later() -> None:
    policy = DestinationPolicy()
    policy.check_literal("hooks.example.com")  # no DNS here
    with pytest.raises(DestinationRefused):
        policy.check_literal("LOCALHOST")
