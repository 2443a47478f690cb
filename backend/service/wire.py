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
from ...protocol.transport import make_router

__all__ = ["Codec", "Limits", "Message", "ProtocolError", "PROTOCOL_VERSION", "messages",
           "make_codec", "make_router_socket", "load_key"]


def make_codec(key: bytes | None, limits: Limits | None = None) -> Codec:
    """Server codec: signed with `key` (None = insecure, nothing checked), server limits."""
    return Codec(Signer(key), limits or Limits.for_server(), ReplayGuard())


def make_router_socket(ctx: zmq.Context, endpoint: str, limits: Limits,
                       heartbeat_s: float = 1.0) -> zmq.Socket:
    """The bound server ROUTER socket, set up as protocol/SPEC.md section 1 says (the
    protocol's transport.make_router): MAXMSGSIZE = the per-frame limit (libzmq drops an
    oversized frame and its connection before buffering it), ROUTER_MANDATORY (sending to a
    vanished client fails instead of vanishing), LINGER 0, ZMTP heartbeats."""
    return make_router(ctx, endpoint, limits, heartbeat_s, mandatory=True)
