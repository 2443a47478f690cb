"""The service's side of the protocol (gen3dface.protocol): codec, socket set-up, limits.

Kept in one small module so the server reads as service logic, and so anything the protocol
package does not (yet) provide is adapted here and nowhere else.
"""
from __future__ import annotations

import zmq

from ...protocol import messages
from ...protocol.envelope import PROTOCOL_VERSION, Codec, Limits, Message
from ...protocol.errors import ProtocolError
from ...protocol.signing import ReplayGuard, Signer, load_key

__all__ = ["Codec", "Limits", "Message", "ProtocolError", "PROTOCOL_VERSION", "messages",
           "make_codec", "make_router_socket", "load_key"]


def make_codec(key: bytes | None, limits: Limits | None = None) -> Codec:
    """Server codec: signed with `key` (None = insecure, nothing checked), server limits."""
    return Codec(Signer(key), limits or Limits.for_server(), ReplayGuard())


def make_router_socket(ctx: zmq.Context, limits: Limits) -> zmq.Socket:
    """ROUTER socket: oversized frames dropped by libzmq before they are buffered
    (MAXMSGSIZE), unreachable peers reported instead of silently dropped (ROUTER_MANDATORY),
    no lingering on close, a reconnecting client with the same identity takes over."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.MAXMSGSIZE, int(limits.max_part_bytes))
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.setsockopt(zmq.RCVHWM, 1000)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    # TCP-level liveness (ZMTP heartbeats): dead peers' connections are reaped by libzmq.
    sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
    return sock
