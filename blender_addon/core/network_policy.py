"""Blender's "Allow Online Access" (bpy.app.online_access) and the backend address.

Policy (README, "Online access"): a backend on THIS machine is not online access. Addresses
whose host is a loopback name or address (localhost, 127.0.0.0/8, ::1) and ipc:// / inproc://
endpoints are always allowed; any other host needs Blender's online access switched on (or
Blender started with --online-mode). The check runs before any socket is made, so with
online access off the add-on never opens a connection to another machine.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .messages import OFFLINE, UserError, user_error

LOCAL_SCHEMES = ("ipc", "inproc")


def address_host(address: str) -> tuple[str, str]:
    """(scheme, host) of a ZeroMQ address such as tcp://127.0.0.1:5599 or tcp://[::1]:5599."""
    if "://" not in address:
        raise ValueError(f"not a ZeroMQ address: {address!r} (write tcp://HOST:PORT)")
    scheme = address.split("://", 1)[0].lower()
    if scheme in LOCAL_SCHEMES:
        return scheme, ""
    host = urlsplit(address).hostname or ""
    if not host:
        raise ValueError(f"no host in address {address!r} (write tcp://HOST:PORT)")
    return scheme, host


def is_loopback(address: str) -> bool:
    scheme, host = address_host(address)
    if scheme in LOCAL_SCHEMES:
        return True
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False          # a host name other than localhost: might be anywhere


def check_online_access(address: str, online_access: bool) -> UserError | None:
    """None when connecting to `address` is allowed, else the error to show."""
    if online_access or is_loopback(address):
        return None
    return user_error(OFFLINE, f"The backend address {address} is on another machine")
