"""ZeroMQ socket set-up and a thin framed channel shared by the client and the server.

The only module of this package (with client.py and curve.py) that imports pyzmq. Sockets are
not thread-safe: a socket and its Channel belong to one thread.

CURVE (SPEC.md section 12): `make_router(..., curve=ServerCurve)` makes a CURVE server socket
whose ZAP domain is ZAP_DOMAIN (the server runs a zmq.auth authenticator for that domain);
`make_dealer(..., curve=ClientCurve)` a CURVE client. A refused or failed handshake is silent
on the client's socket; `handshake_monitor` + `handshake_failure` turn it into a message.
"""
from __future__ import annotations

import ipaddress
import os
import re

import zmq

from .envelope import Codec, Limits, Message
from .errors import ProtocolError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
ZAP_DOMAIN = "gen3dface"
DEFAULT_HEARTBEAT_S = 1.0
LIVENESS_BEATS = 3
HWM = 1000


def _set_zmtp_heartbeat(sock: zmq.Socket, heartbeat_s: float) -> None:
    """ZMTP-level heartbeats (libzmq >= 4.2): they watch the TCP connection only; the
    protocol's own ping/pong (SPEC.md section 8) watches the peer's application loop."""
    ivl = max(1, int(heartbeat_s * 1000))
    for opt, val in (("HEARTBEAT_IVL", ivl), ("HEARTBEAT_TIMEOUT", ivl * LIVENESS_BEATS),
                     ("HEARTBEAT_TTL", ivl * LIVENESS_BEATS)):
        if hasattr(zmq, opt):
            try:
                sock.setsockopt(getattr(zmq, opt), val)
            except zmq.ZMQError:
                pass


def _common(sock: zmq.Socket, limits: Limits, heartbeat_s: float) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, int(limits.max_part_bytes))
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.SNDHWM, HWM)
    _set_zmtp_heartbeat(sock, heartbeat_s)


def make_dealer(ctx: zmq.Context, endpoint: str, limits: Limits | None = None,
                heartbeat_s: float = DEFAULT_HEARTBEAT_S,
                routing_id: bytes | None = None, curve=None) -> zmq.Socket:
    """A connected client DEALER socket: LINGER 0, MAXMSGSIZE = limits.max_part_bytes, a fresh
    random 16-byte routing id (each new socket is a new peer for the ROUTER); with `curve` (a
    curve.ClientCurve) a CURVE client of the server with that public key."""
    sock = ctx.socket(zmq.DEALER)
    _common(sock, limits or Limits.for_client(), heartbeat_s)
    sock.setsockopt(zmq.ROUTING_ID, routing_id or os.urandom(16))
    if curve is not None:
        sock.curve_serverkey = curve.server_public
        sock.curve_publickey = curve.public
        sock.curve_secretkey = curve.secret
    sock.connect(endpoint)
    return sock


HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def handshake_monitor(sock: zmq.Socket) -> zmq.Socket:
    """A PAIR socket receiving `sock`'s failed-handshake events (read with handshake_failure;
    close it with sock.disable_monitor() and .close())."""
    return sock.get_monitor_socket(HANDSHAKE_EVENTS)


def handshake_failure(monitor: zmq.Socket, curve: bool) -> str | None:
    """Why the last handshakes failed, in words for the person, or None (never blocks)."""
    why = None
    while monitor.poll(0):
        frames = monitor.recv_multipart()
        event = int.from_bytes(frames[0][:2], "little")
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            why = ("the server refused this client's CURVE key: it is not on the server's "
                   "allow-list (on the server: `gen3dface keys allow CLIENT.key`)")
        elif curve:
            why = ("the CURVE handshake with the server failed: the server's public key given "
                   "here is not the server's (server.key from `gen3dface keys init`), or the "
                   "server does not use CURVE")
        else:
            why = ("the handshake with the server failed: it probably requires CURVE; give "
                   "its public key and this client's key file (protocol/SPEC.md section 12)")
    return why


def make_router(ctx: zmq.Context, endpoint: str, limits: Limits | None = None,
                heartbeat_s: float = DEFAULT_HEARTBEAT_S, mandatory: bool = True,
                curve=None) -> zmq.Socket:
    """A bound server ROUTER socket: LINGER 0, MAXMSGSIZE = limits.max_part_bytes and (by
    default) ROUTER_MANDATORY, so sending to a vanished client raises zmq.ZMQError
    (EHOSTUNREACH) instead of being dropped silently. With `curve` (a curve.ServerCurve) a
    CURVE server in ZAP domain ZAP_DOMAIN: the context must run an authenticator for it."""
    sock = ctx.socket(zmq.ROUTER)
    _common(sock, limits or Limits.for_server(), heartbeat_s)
    if mandatory:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if curve is not None:
        sock.curve_server = True
        sock.curve_publickey = curve.public
        sock.curve_secretkey = curve.secret
        sock.zap_domain = ZAP_DOMAIN.encode()
    sock.bind(endpoint)
    return sock


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// endpoints on 127.0.0.0/8, ::1 or localhost: the
    only places where insecure (unsigned) mode is acceptable."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    m = re.match(r"^tcp://(\[[^\]]+\]|[^:/]+):(\d+|\*)$", endpoint)
    if not m:
        return False
    host = m.group(1).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Channel:
    """A socket plus a Codec: send Messages, receive decoded Messages, never block unless
    asked to. On a ROUTER, received messages carry .routing and replies reuse it."""

    def __init__(self, sock: zmq.Socket, codec: Codec):
        self.sock = sock
        self.codec = codec
        self.router = sock.socket_type == zmq.ROUTER

    def send(self, msg: Message, block: bool = False) -> bool:
        """Encode, sign and send. False when the send queue is full (or, with
        ROUTER_MANDATORY, the peer is unreachable); never blocks unless block=True."""
        frames = self.codec.encode(msg)
        try:
            self.sock.send_multipart(frames, flags=0 if block else zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as e:
            if e.errno == zmq.EHOSTUNREACH:
                return False
            raise
        return True

    def readable(self, timeout_s: float = 0.0) -> bool:
        return bool(self.sock.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN))

    def recv_frames(self) -> list | None:
        """The next multipart message's frames (zmq.Frame, no copy), or None if none waits."""
        try:
            return self.sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None

    def recv(self) -> Message | None:
        """Next decoded message, None if none waits; ProtocolError if it is invalid (with
        .routing and .header set where known, so a server can answer with an error)."""
        frames = self.recv_frames()
        if frames is None:
            return None
        return self.codec.decode(frames, router=self.router)

    def decode(self, frames, digests=None) -> Message:
        """Decode frames from recv_frames() (ProtocolError as recv); `digests` as
        Codec.decode."""
        return self.codec.decode(frames, router=self.router, digests=digests)

    def close(self) -> None:
        self.sock.close(linger=0)


__all__ = ["DEFAULT_ENDPOINT", "DEFAULT_HEARTBEAT_S", "LIVENESS_BEATS", "ZAP_DOMAIN",
           "make_dealer", "make_router", "handshake_monitor", "handshake_failure",
           "is_loopback_endpoint", "Channel", "ProtocolError"]
