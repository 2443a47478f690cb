"""CURVE identities (SPEC.md section 12): key files, the server's allow-list, key strings.

ZeroMQ's CURVE (CurveZMQ, libsodium) encrypts and authenticates every connection; this module
only handles keys. Keys are Z85 text (40 characters for 32 bytes) in ZeroMQ certificate files,
the format `zmq.auth.create_certificates` writes and `zmq.auth.load_certificate` reads:

    NAME.key          public certificate: `public-key = "..."`          (share freely)
    NAME.key_secret   secret certificate: public-key and secret-key     (mode 0600, keep it)

A server's key folder (default ~/.config/gen3dface/server, `gen3dface keys init`):

    server.key, server.key_secret   the server's key pair (clients need server.key)
    clients/NAME.key                the allow-list: public keys of the clients it accepts
    admins/NAME.key                 admin identities: accepted too, and they see every job

Parsing is done here with the standard library (so the Blender add-on loads keys with nothing
more); making a key pair needs libsodium, i.e. pyzmq's zmq.curve_keypair().
"""
from __future__ import annotations

import datetime
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ProtocolError
from .signing import check_key_file_permissions

Z85_RE = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
SERVER_NAME = "server"
CLIENTS_DIR, ADMINS_DIR = "clients", "admins"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def default_server_dir() -> Path:
    """$XDG_CONFIG_HOME/gen3dface/server (~/.config/gen3dface/server)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "gen3dface" / "server"


def is_z85_key(text) -> bool:
    return isinstance(text, (str, bytes)) and Z85_RE.fullmatch(
        text.decode("ascii", "replace") if isinstance(text, bytes) else text) is not None


def read_certificate(path: str | os.PathLike) -> tuple[bytes, bytes | None]:
    """(public key, secret key or None), Z85 bytes, from a ZeroMQ certificate file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ProtocolError("AUTH", f"no CURVE key file at {p}")
    public = secret = None
    for line in p.read_bytes()[:65536].splitlines():
        line = line.strip()
        if line.startswith(b"#"):
            continue
        for name in (b"public-key", b"secret-key"):
            if line.startswith(name) and b"=" in line:
                value = line.split(b"=", 1)[1].strip(b" \t'\"")
                if not is_z85_key(value):
                    raise ProtocolError("AUTH", f"{p}: {name.decode()} is not a 40-character "
                                        "Z85 CURVE key")
                if name == b"public-key":
                    public = value
                else:
                    secret = value
    if public is None:
        raise ProtocolError("AUTH", f"{p} is not a CURVE key file (no public-key line)")
    return public, secret


def load_public_key(value: str | os.PathLike) -> bytes:
    """A public key given as a certificate file (public or secret: only its public key is
    read), or as its 40 Z85 characters. A file that exists wins: a path can itself be 40
    characters of the Z85 alphabet (/tmp/tmpabcdefgh/curve-server/server.key is)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = str(value).strip()
    if Path(text).expanduser().is_file() or not is_z85_key(text):
        return read_certificate(text)[0]
    return text.encode("ascii")


def load_keypair(path: str | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) from a secret certificate file, which must be owner-only (like the
    HMAC key file: `chmod 600 FILE`)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ProtocolError("AUTH", f"no CURVE key file at {p}; make one with `gen3dface keys "
                            "client NAME`")
    public, secret = read_certificate(p)
    if secret is None:
        raise ProtocolError("AUTH", f"{p} holds only a public key; give the secret key file "
                            "(NAME.key_secret)")
    check_key_file_permissions(p)
    return public, secret


def _write(path: Path, text: str, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise ProtocolError("AUTH", f"{path} already exists; not overwriting it") from None
    with os.fdopen(fd, "w") as f:
        if sys.platform != "win32":
            os.fchmod(f.fileno(), mode)
        f.write(text)


def _certificate(public: bytes, secret: bytes | None, name: str) -> str:
    kind = "Secret" if secret else "Public"
    lines = [f"#   ZeroMQ CURVE {kind} Certificate for gen3dface ({name}), "
             f"{datetime.datetime.now().isoformat(timespec='seconds')}",
             "#   " + ("DO NOT GIVE THIS FILE TO ANYONE; keep it mode 0600." if secret else
                      "Give this file to the other side (it holds no secret)."),
             "metadata", f"    name = \"{name}\"", "curve",
             f"    public-key = \"{public.decode('ascii')}\""]
    if secret:
        lines.append(f"    secret-key = \"{secret.decode('ascii')}\"")
    return "\n".join(lines) + "\n"


def write_keypair(folder: str | os.PathLike, name: str, overwrite: bool = False
                  ) -> tuple[Path, Path]:
    """Make a key pair: FOLDER/NAME.key (public, 0644) and FOLDER/NAME.key_secret (0600)."""
    import zmq                                     # libsodium lives in libzmq

    if not NAME_RE.fullmatch(name):
        raise ValueError(f"a key name is 1-64 characters of letters, digits, '.', '_', '-' "
                         f"starting with a letter or digit; not {name!r}")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    pub_path, sec_path = folder / f"{name}.key", folder / f"{name}.key_secret"
    _write(sec_path, _certificate(public, secret, name), 0o600, overwrite)
    _write(pub_path, _certificate(public, None, name), 0o644, overwrite)
    return pub_path, sec_path


def write_public(path: str | os.PathLike, public: bytes, name: str, overwrite: bool = False) -> Path:
    p = Path(path).expanduser()
    _write(p, _certificate(public, None, name), 0o644, overwrite)
    return p


@dataclass(frozen=True)
class ClientCurve:
    """What a client needs for CURVE: the server's public key and its own key pair (Z85)."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, server_public_key: str | os.PathLike, client_key_file: str | os.PathLike
             ) -> "ClientCurve":
        public, secret = load_keypair(client_key_file)
        return cls(load_public_key(server_public_key), public, secret)


class AllowList:
    """The public keys a CURVE server accepts (clients/ and admins/ of its key folder), read
    again whenever a file there changes, so `gen3dface keys allow/revoke` takes effect for the
    next connection without a restart. Keys are Z85 bytes; names are the file stems."""

    def __init__(self, server_dir: str | os.PathLike):
        self.dir = Path(server_dir).expanduser()
        self._stamp = None
        self.clients: dict[bytes, str] = {}
        self.admins: dict[bytes, str] = {}
        self.refresh()

    def _stamp_now(self):
        out = []
        for sub in (CLIENTS_DIR, ADMINS_DIR):
            d = self.dir / sub
            try:
                out.append((sub, d.stat().st_mtime_ns,
                            tuple(sorted((f.name, f.stat().st_mtime_ns) for f in d.glob("*.key")))))
            except OSError:
                out.append((sub, None, ()))
        return tuple(out)

    def refresh(self) -> None:
        stamp = self._stamp_now()
        if stamp == self._stamp:
            return
        clients, admins = {}, {}
        for sub, table in ((CLIENTS_DIR, clients), (ADMINS_DIR, admins)):
            for f in sorted((self.dir / sub).glob("*.key")):
                try:
                    table[read_certificate(f)[0]] = f.stem
                except (ProtocolError, OSError):
                    continue                        # a bad file allows nobody
        self.clients, self.admins, self._stamp = clients, admins, stamp

    def allowed(self, public: bytes) -> bool:
        self.refresh()
        return public in self.clients or public in self.admins

    def is_admin(self, public: bytes | str | None) -> bool:
        if public is None:
            return False
        key = public.encode("ascii") if isinstance(public, str) else public
        return key in self.admins

    def name(self, public: bytes | str) -> str | None:
        key = public.encode("ascii") if isinstance(public, str) else public
        return self.admins.get(key) or self.clients.get(key)

    # pyzmq's ThreadAuthenticator credentials provider protocol
    def callback(self, domain: str, key: bytes) -> bool:
        return self.allowed(bytes(key))


@dataclass(frozen=True)
class ServerCurve:
    """A CURVE server's keys and allow-list, from its key folder."""

    public: bytes
    secret: bytes
    allow: AllowList

    @classmethod
    def load(cls, server_dir: str | os.PathLike) -> "ServerCurve":
        d = Path(server_dir).expanduser()
        secret_file = d / f"{SERVER_NAME}.key_secret"
        if not secret_file.is_file():
            raise ProtocolError("AUTH", f"no server key pair in {d} (looked for "
                                f"{secret_file.name}); make one with `gen3dface keys init "
                                f"--dir {d}`")
        public, secret = load_keypair(secret_file)
        return cls(public, secret, AllowList(d))


__all__ = ["AllowList", "ClientCurve", "ServerCurve", "default_server_dir", "load_keypair",
           "load_public_key", "read_certificate", "write_keypair", "write_public", "is_z85_key"]
