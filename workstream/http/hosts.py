"""Without an API token, serve only requests addressed to this machine (DNS rebinding).

With no token, the API trusts whoever can reach the port: by default, processes on this
machine. A web page in a browser on this machine could still reach it through DNS
rebinding: `rebind.attacker.example` first resolves to the attacker's server, which sends
the page, then to 127.0.0.1, and the page's requests reach this port as same-origin ones,
with `Host: rebind.attacker.example`. And a page of any origin may send a request without
reading its answer. So, when no token is configured:

* `Host` must name the configured HOST, `localhost`, `127.0.0.1` or `[::1]`, with or
  without a port (a request without `Host`, as HTTP/1.0 allows, comes from no browser and
  is served). When HOST is a wildcard (`0.0.0.0`, `::`, only with ALLOW_INSECURE_BIND),
  any IP address is accepted too: rebinding needs a name, and the machine's addresses are
  not known here.
* A request that changes state (any method but GET, HEAD and OPTIONS) carrying `Origin`
  must come from this server's own origin, `http://` or `https://` followed by the request's
  `Host`. `Origin: null` (sandboxed frames, local files) is refused too.

`/health` (GET, HEAD) is exempt: it is open even with a token, it changes nothing and
tells nothing a page could use, and load balancers and orchestrators probe it under
whatever name or address they know the server by.

Both refusals are 403 `forbidden` with the JSON error body. With a token none of this
applies: a browser cannot send the token cross-origin without a preflight, which the API
refuses (OPTIONS is 405), and a rebinding page does not know the token.
"""

from __future__ import annotations

import ipaddress
import re

import falcon

from workstream.errors import WorkStreamError
from workstream.http.middleware import OPEN_ROUTES

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]"})
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?")


class Forbidden(WorkStreamError):
    """The request is not addressed to this server (Host), or comes from a page of another
    origin (Origin)."""

    code = "forbidden"


def _bracketed(host: str) -> str:
    """An IPv6 address as it appears in a Host header; any other name as it is."""
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]") if name.startswith("[") else name)
    except ValueError:
        return False
    return True


class HostCheckMiddleware:
    """Refuses requests whose `Host` or `Origin` is foreign (see the module doc)."""

    def __init__(self, configured_host: str | None = None) -> None:
        configured = (configured_host or "").strip().lower()
        self._wildcard = configured in _WILDCARDS
        extra = {_bracketed(configured)} if configured and not self._wildcard else set()
        self._names = LOOPBACK_NAMES | extra

    def host_allowed(self, host: str) -> bool:
        match = _HOST.fullmatch(host.strip().lower())
        if match is None:
            return False
        name = match.group("name")
        return name in self._names or (self._wildcard and _is_ip(name))

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if (req.method, req.path) in OPEN_ROUTES:
            return  # health probes name the server as they like; it tells nothing anyway
        host = req.get_header("Host")
        if host is not None and not self.host_allowed(host):
            raise Forbidden(
                "this server answers only requests addressed to it by its own name or a "
                "loopback address (Host); configure API_TOKEN to serve other names"
            )
        origin = req.get_header("Origin")
        if origin is None or req.method in SAFE_METHODS:
            return
        own = (host or "").strip().lower()
        if not own or origin.strip().lower() not in (f"http://{own}", f"https://{own}"):
            raise Forbidden("requests that change state are refused from another origin")
