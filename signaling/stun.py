"""A STUN Binding server (RFC 8489 section 5, no authentication) beside the signaling server.

Peers behind a NAT learn their server-reflexive address from it, so a swarm works across
homes with no STUN server of anyone else's. Messages are parsed and built with aioice's
STUN codec (``aioice.stun``, the one aiortc itself uses), never by hand. Only Binding
requests are answered; everything else is dropped and counted. A response is no larger than
the request plus one address, and each source address has a token bucket, so the server is
no useful reflector.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict

from aioice import stun

from .registry import TokenBucket

log = logging.getLogger("signaling.stun")

MAX_DATAGRAM = 1500  # a Binding request is 20-100 bytes; anything larger is not one
REQUESTS_PER_SECOND = 20.0  # per source address: ICE sends a few per candidate, retransmits back off
BURST = 60
MAX_ADDRESSES = 4096


class StunServer(asyncio.DatagramProtocol):
    """Answers STUN Binding requests with XOR-MAPPED-ADDRESS = the request's source (ip, port)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.counts: Counter[str] = Counter()  # answered, malformed, not_binding, rate_limited
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # selector and uvloop datagram transports

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        if len(data) > MAX_DATAGRAM:
            self.counts["malformed"] += 1
            return
        try:
            request = stun.parse_message(data)
        except ValueError:
            self.counts["malformed"] += 1
            return
        if request.message_method != stun.Method.BINDING or request.message_class != stun.Class.REQUEST:
            self.counts["not_binding"] += 1
            return
        if not self._allowed(addr[0]):
            self.counts["rate_limited"] += 1
            return
        response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                                transaction_id=request.transaction_id)  # fmt: skip
        response.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
        response.add_fingerprint()
        if self.transport is not None:
            self.transport.sendto(bytes(response), addr)
        self.counts["answered"] += 1

    def _allowed(self, address: str) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(REQUESTS_PER_SECOND, BURST)
            while len(self._buckets) > MAX_ADDRESSES:
                self._buckets.popitem(last=False)
        return bucket.take()


async def start_stun(host: str, port: int) -> tuple[asyncio.DatagramTransport, StunServer]:
    """Bind the STUN server on UDP ``host:port``; raise OSError (e.g. port in use) with the port named."""
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.create_datagram_endpoint(StunServer, local_addr=(host, port))
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen for STUN on UDP {host}:{port}: {exc.strerror}; "
                                 "use --stun-port PORT or --no-stun") from None  # fmt: skip
    log.info("STUN server on udp %s:%d", host, transport.get_extra_info("sockname")[1])
    return transport, protocol
