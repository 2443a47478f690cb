"""The service's side of the protocol (gen3dface.protocol): codec, socket set-up, limits.

Kept in one small module so the server reads as service logic, and so anything the protocol
package does not (yet) provide is adapted here and nowhere else.
"""
from __future__ import annotations

import zmq

from ...protocol import messages
from ...protocol.envelope import (PROTOCOL_VERSION, Codec, Limits, Message, reply_parent,
                                  split_routing, valid_id)
from ...protocol.errors import ProtocolError
from ...protocol.signing import (SHA256, ReplayGuard, Signer, buffer_digest, choose_digest,
                                 load_key, supported_digests)
from ...protocol.transport import ZAP_DOMAIN, make_router

__all__ = ["Codec", "Limits", "Message", "ProtocolError", "PROTOCOL_VERSION", "messages",
           "make_codec", "make_router_socket", "load_key", "reply_parent", "split_routing",
           "valid_id", "ZAP_DOMAIN", "SHA256", "buffer_digest", "choose_digest",
           "supported_digests"]


def make_codec(key: bytes | None, limits: Limits | None = None,
               replay_max_nonces: int = 200_000) -> Codec:
    """Server codec: signed with `key` (None = insecure, nothing checked), server limits, a
    replay cache of at most `replay_max_nonces` entries (SPEC section 4)."""
    return Codec(Signer(key), limits or Limits.for_server(),
                 ReplayGuard(max_nonces=replay_max_nonces))


def make_router_socket(ctx: zmq.Context, endpoint: str, limits: Limits,
                       heartbeat_s: float = 1.0, curve=None) -> zmq.Socket:
    """The bound server ROUTER socket, set up as protocol/SPEC.md section 1 says (the
    protocol's transport.make_router): MAXMSGSIZE = the per-frame limit (libzmq drops an
    oversized frame and its connection before buffering it), ROUTER_MANDATORY (sending to a
    vanished client fails instead of vanishing), LINGER 0, ZMTP heartbeats."""
    return make_router(ctx, endpoint, limits, heartbeat_s, mandatory=True, curve=curve)
