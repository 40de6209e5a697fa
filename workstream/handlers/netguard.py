"""Which network destinations an outgoing request may reach (server-side request forgery).

A job's payload is written by an API client, but the request it causes is sent from the
server, from inside the operator's network. So before connecting, the host is resolved once
and every address it resolves to is checked; the connection then goes to a checked
address, never to the name (a second DNS answer, as in DNS rebinding, cannot change it).

By default every address that is not plainly public is refused: loopback, private (RFC
1918), shared (100.64.0.0/10), link-local (cloud metadata at 169.254.169.254), unique-local
(fc00::/7), site-local, documentation and benchmark ranges, reserved, multicast, broadcast
and unspecified (0.0.0.0, ::), and IPv6 forms that carry one of those IPv4 addresses
(IPv4-mapped, IPv4-compatible, 6to4, NAT64). Odd spellings of IPv4 addresses (`2130706433`,
`127.1`, `0x7f.1`) are read as the C library reads them, so they are checked as what they
are.

The operator decides exceptions (`DestinationPolicy`):

- `deny_networks`: more networks to refuse (for instance the server's own public range).
  Always wins, even over `allow_hosts`.
- `allow_hosts`: host names (exact, case-insensitive) and IP addresses or networks that
  may be reached although the default refuses them, for an internal receiver on purpose.
  A listed name may resolve to any address not in `deny_networks`; a listed network lets
  through the addresses in it, whichever name led there.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses the host resolves to, as text; raises OSError if none.
Resolver = Callable[[str, int], list[str]]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# IANA special-purpose registries, spelt out: `ipaddress.is_global` misses some of them in
# the Python versions we support (224.0.0.0/4, fec0::/10, 192.0.0.0/24, ::/96 ...).
_REFUSED_V4 = tuple(
    _V4(net)
    for net in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
    )
)
_REFUSED_V6 = tuple(
    _V6(net)
    for net in (
        "::/96",  # unspecified, loopback and IPv4-compatible addresses
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo included
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique-local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed by some)
        "ff00::/8",  # multicast
    )
)
_NAT64 = _V6("64:ff9b::/96")


class DestinationRefused(Exception):
    """The destination is one that outgoing requests may not reach."""


class ResolutionFailed(Exception):
    """The host name did not resolve (in time)."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that carry
    one to an IPv4 host: IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002::/16), NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet; False for every special range above."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False  # fe80::1%eth0 and friends
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
        refused: tuple[IPNetwork, ...] = _REFUSED_V6
    else:
        refused = _REFUSED_V4
    if any(address in network for network in refused):
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_private
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as an IP literal means, in any spelling the C library
    accepts (`127.0.0.1`, `127.1`, `2130706433`, `0x7f.1`, `::1`); None for a name."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or not text.isascii() or not all(ch.isalnum() or ch == "." for ch in text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def is_localhost_name(host: str) -> bool:
    """RFC 6761: `localhost` and names under it are the local host, whatever DNS says."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _network(entry: str, setting: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{setting}: {entry!r} is not an IP address or network") from None


def is_host_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return bool(text) and all(
        0 < len(label) <= 63 and all(ch.isalnum() or ch in "-_" for ch in label) for label in labels
    )


@dataclass(frozen=True)
class DestinationPolicy:
    """What outgoing requests may reach; see the module's description."""

    allow_names: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    deny_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(
        cls,
        allow_hosts: Iterable[str] = (),
        deny_networks: Iterable[str] = (),
        *,
        allow_setting: str = "allow_hosts",
        deny_setting: str = "deny_networks",
    ) -> DestinationPolicy:
        """Build from operator text; ValueError names the setting and the bad entry."""
        names: set[str] = set()
        allowed: list[IPNetwork] = []
        for raw in allow_hosts:
            entry = raw.strip().lower()
            if not entry:
                continue
            if literal_address(entry) is not None or "/" in entry or ":" in entry:
                allowed.append(_network(entry, allow_setting))
            elif entry.isascii() and is_host_name(entry):
                names.add(entry.rstrip("."))
            else:
                raise ValueError(f"{allow_setting}: {raw!r} is not a host name, address or network")
        denied = tuple(_network(raw, deny_setting) for raw in deny_networks if raw.strip())
        return cls(frozenset(names), tuple(allowed), denied)

    def allows(self, host: str, address: IPAddress) -> bool:
        """May a request for `host` connect to `address`?"""
        forms: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None:
                forms.append(inner)
        if any(form in net for form in forms for net in self.deny_networks):
            return False
        if host.lower().rstrip(".") in self.allow_names:
            return True
        if any(form in net for form in forms for net in self.allow_networks):
            return True
        return is_public(address)

    def check_literal(self, host: str) -> None:
        """Refuse, without any DNS, a host written as an address (or `localhost`) that
        this policy refuses; a name passes here and is checked when it is resolved."""
        address = literal_address(host)
        if address is None and is_localhost_name(host):
            address = ipaddress.IPv4Address("127.0.0.1")
        if address is not None and not self.allows(host, address):
            raise DestinationRefused(
                f"{host} is a loopback, private or reserved address, which webhooks may "
                "not reach unless the operator allows it"
            )

    def resolve(self, host: str, port: int, resolver: Resolver, timeout: float) -> list[IPAddress]:
        """The addresses to connect to, every one checked: refuses if any address the host
        resolves to is refused (a name that points inside is refused as a whole)."""
        self.check_literal(host)
        address = literal_address(host)
        if address is not None:
            return [address]
        found: list[IPAddress] = []
        for text in resolve_within(resolver, host, port, timeout):
            try:
                candidate = ipaddress.ip_address(text)
            except ValueError:
                raise ResolutionFailed(f"resolver answered {text!r}, not an address") from None
            if not self.allows(host, candidate):
                raise DestinationRefused(
                    f"{host} resolves to a loopback, private or reserved address, which "
                    "webhooks may not reach unless the operator allows it"
                )
            if candidate not in found:
                found.append(candidate)
        if not found:
            raise ResolutionFailed(f"{host} resolves to no address")
        return found


def system_resolver(host: str, port: int) -> list[str]:
    """`getaddrinfo` for TCP, addresses in the order the system prefers."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def resolve_within(resolver: Resolver, host: str, port: int, timeout: float) -> list[str]:
    """Run the resolver with a bound: `getaddrinfo` has no timeout of its own. A resolver
    that overruns is left to finish on its (daemon) thread, bounded by the system's own
    resolver timeouts."""
    outcome: list[list[str] | BaseException] = []

    def run() -> None:
        try:
            outcome.append(resolver(host, port))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="webhook-resolve", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if not outcome:
        raise ResolutionFailed(f"{host} did not resolve within {timeout:g}s")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise ResolutionFailed(f"{host} did not resolve: {result}") from None
    return result
