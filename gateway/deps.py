"""Dependencies injected into handlers: the engine, the caller, the client address.

``principal`` needs a valid bearer token (401); ``doctor`` and ``patient`` also need that role
(403). Handlers declare what they need by parameter name.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import TYPE_CHECKING, Any

from litestar.di import Provide

from engine.errors import Unauthenticated
from gateway.logs import set_user

if TYPE_CHECKING:
    from litestar import Request
    from litestar.datastructures import State

    from engine.principal import Principal
    from engine.runtime import Engine


async def provide_engine(state: State) -> Engine:
    engine: Engine = state.engine
    return engine


def bearer_token(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("a bearer token is required", code="missing_token")
    return token.strip()


async def provide_principal(request: Request[Any, Any, Any], engine: Engine) -> Principal:
    principal = await engine.authenticate(bearer_token(request))
    set_user(principal.user_id)  # the access line and every later log line of this request
    return principal


async def provide_doctor(principal: Principal) -> Principal:
    return principal.require("doctor")


async def provide_patient(principal: Principal) -> Principal:
    return principal.require("patient")


@functools.lru_cache(maxsize=8)
def _networks(trusted: frozenset[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in trusted)


def _trusted(
    host: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)


def client_address(request: Request[Any, Any, Any], trusted_proxies: frozenset[str]) -> str:
    """The client's address: the peer, or the last untrusted hop of ``X-Forwarded-For`` (all
    its lines joined in order) when the peer is a configured trusted proxy (addresses or CIDR
    networks): the address the nearest trusted proxy saw, so a client cannot spoof its way past
    a per-address limit by sending the header, or a line of it, itself."""
    peer = request.client.host if request.client else "unknown"
    networks = _networks(trusted_proxies)
    if not networks or not _trusted(peer, networks):
        return peer
    # Every header line, in the order received: a proxy may append its own line rather than
    # extend the client's, and reading only the first line would believe the client's.
    lines = request.headers.getall("x-forwarded-for", [])
    hops = [h.strip() for line in lines for h in line.split(",") if h.strip()]
    for hop in reversed(hops):
        if _trusted(hop, networks):
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            return peer
    return peer


async def provide_address(request: Request[Any, Any, Any], engine: Engine) -> str:
    return client_address(request, engine.settings.trusted_proxies)


DEPENDENCIES = {
    "engine": Provide(provide_engine),
    "principal": Provide(provide_principal),
    "doctor": Provide(provide_doctor),
    "patient": Provide(provide_patient),
    "address": Provide(provide_address),
}
