"""`gen3dface keys`: CURVE identities for a backend that serves other machines.

    gen3dface keys init [--dir DIR]                 server key pair + allow-list folders (+ the
                                                    HMAC signing key, when none is there yet)
    gen3dface keys client NAME [--out DIR] [--allow] [--admin]
                                                    a client key pair NAME.key / NAME.key_secret
                                                    (--allow: also put it on this server's list)
    gen3dface keys allow CLIENT.key [--name NAME] [--admin]    allow a client's public key
    gen3dface keys revoke NAME                      take a client (or admin) off the list
    gen3dface keys list                             the server's public key and who is allowed

The server's folder (default ~/.config/gen3dface/server; protocol/SPEC.md section 12):
server.key (give it to clients), server.key_secret (never leaves the host), signing.key (the
HMAC key every client also needs), clients/NAME.key, admins/NAME.key. allow/revoke take
effect for the next connection; a running server needs no restart.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .cli_support import EXIT_OK, EXIT_USAGE


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "keys", help="CURVE keys: the server's key pair, client key pairs, the allow-list",
        description="Encryption and identities for a backend other machines use (ZeroMQ CURVE). "
                    "A server bound to a non-loopback address needs `keys init`; each client "
                    "needs its own key pair on the server's allow-list, the server's public "
                    "key (server.key) and the signing key.")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    def server_dir(q):
        q.add_argument("--dir", help="the server's key folder (default "
                       "~/.config/gen3dface/server)")

    q = sub.add_parser("init", help="make the server's key pair and allow-list folders")
    server_dir(q)
    q.add_argument("--force", action="store_true",
                   help="replace an existing server key pair (every client then needs the new "
                        "server.key)")
    q.set_defaults(func=handle_init)

    q = sub.add_parser("client", help="make a client key pair NAME.key + NAME.key_secret")
    q.add_argument("name", help="who it is for (letters, digits, '.', '_', '-'), e.g. alice")
    q.add_argument("--out", default=".", help="where to write the two files (default: here)")
    q.add_argument("--allow", action="store_true",
                   help="also add its public key to this host's server allow-list")
    q.add_argument("--admin", action="store_true",
                   help="with --allow: as an admin identity (sees and cancels every job)")
    server_dir(q)
    q.set_defaults(func=handle_client)

    q = sub.add_parser("allow", help="put a client's public key (NAME.key) on the allow-list")
    q.add_argument("public_key", help="the client's NAME.key file (or NAME.key_secret: only "
                   "its public key is copied)")
    q.add_argument("--name", help="the name to list it under (default: the file's stem)")
    q.add_argument("--admin", action="store_true", help="as an admin identity")
    server_dir(q)
    q.set_defaults(func=handle_allow)

    q = sub.add_parser("revoke", help="take a client or admin off the allow-list")
    q.add_argument("name")
    server_dir(q)
    q.set_defaults(func=handle_revoke)

    q = sub.add_parser("list", help="the server's public key and the allowed identities")
    server_dir(q)
    q.set_defaults(func=handle_list)


def _dir(args) -> Path:
    from ...protocol.curve import default_server_dir
    return Path(args.dir).expanduser() if args.dir else default_server_dir()


def _fail(message: str) -> int:
    print(f"gen3dface keys: {message}", file=sys.stderr)
    return EXIT_USAGE


def handle_init(args) -> int:
    from ...protocol import curve, signing

    d = _dir(args)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    for sub in (curve.CLIENTS_DIR, curve.ADMINS_DIR):
        (d / sub).mkdir(exist_ok=True)
    secret = d / f"{curve.SERVER_NAME}.key_secret"
    if secret.exists() and not args.force:
        return _fail(f"{secret} already exists (clients use its public half); add --force to "
                     "replace it")
    try:
        pub, sec = curve.write_keypair(d, curve.SERVER_NAME, overwrite=args.force)
        signing_key = d / "signing.key"
        made_key = not signing_key.exists()
        if made_key:
            signing.generate_key_file(signing_key)
    except Exception as e:
        return _fail(getattr(e, "message", str(e)))
    print(f"server key pair: {pub} (give to clients) and {sec} (stays here, mode 0600)")
    print(f"signing key: {signing_key} ({'new; ' if made_key else ''}give to clients, "
          "privately)")
    print(f"allow-list: {d / curve.CLIENTS_DIR}/, admins: {d / curve.ADMINS_DIR}/")
    print("next: `gen3dface keys client NAME` per artist, `gen3dface keys allow NAME.key`, then "
          f"`gen3dface serve --bind tcp://0.0.0.0:5555 --key-file {signing_key}`")
    return EXIT_OK


def _allow(d: Path, public_file: Path, name: str, admin: bool) -> Path:
    from ...protocol import curve

    if not (d / f"{curve.SERVER_NAME}.key_secret").exists():
        raise ValueError(f"{d} is not a server key folder; run `gen3dface keys init` first")
    if not curve.NAME_RE.fullmatch(name):
        raise ValueError(f"bad name {name!r}: letters, digits, '.', '_', '-'")
    public, _ = curve.read_certificate(public_file)
    allow = curve.AllowList(d)
    other = allow.name(public)
    if other is not None:
        raise ValueError(f"this public key is already allowed as {other!r}")
    target = d / (curve.ADMINS_DIR if admin else curve.CLIENTS_DIR) / f"{name}.key"
    target.parent.mkdir(exist_ok=True)
    if target.exists() or (d / curve.CLIENTS_DIR / f"{name}.key").exists() or \
            (d / curve.ADMINS_DIR / f"{name}.key").exists():
        raise ValueError(f"the name {name!r} is taken; revoke it first or give --name")
    return curve.write_public(target, public, name)


def handle_client(args) -> int:
    from ...protocol import curve

    if args.admin and not args.allow:
        return _fail("--admin needs --allow")
    try:
        pub, sec = curve.write_keypair(args.out, args.name)
        print(f"client key pair: {pub} (public) and {sec} (secret, mode 0600: this client's "
              "key file)")
        if args.allow:
            target = _allow(_dir(args), pub, args.name, args.admin)
            print(f"allowed{' as admin' if args.admin else ''}: {target}")
        else:
            print(f"on the server: `gen3dface keys allow {pub}`")
    except Exception as e:
        return _fail(getattr(e, "message", str(e)))
    return EXIT_OK


def handle_allow(args) -> int:
    path = Path(args.public_key).expanduser()
    name = args.name or path.name.split(".key")[0]
    try:
        target = _allow(_dir(args), path, name, args.admin)
    except Exception as e:
        return _fail(getattr(e, "message", str(e)))
    print(f"allowed {name!r}{' as admin' if args.admin else ''}: {target} (takes effect for "
          "its next connection)")
    return EXIT_OK


def handle_revoke(args) -> int:
    from ...protocol import curve

    d = _dir(args)
    gone = [p for p in (d / curve.CLIENTS_DIR / f"{args.name}.key",
                        d / curve.ADMINS_DIR / f"{args.name}.key") if p.exists()]
    if not gone:
        return _fail(f"no client or admin {args.name!r} in {d}")
    for p in gone:
        p.unlink()
    print(f"revoked {args.name!r}: new connections with its key are refused (an open "
          "connection stays until it drops; restart the server to cut it at once)")
    return EXIT_OK


def handle_list(args) -> int:
    from ...protocol import curve

    d = _dir(args)
    try:
        pub, _ = curve.read_certificate(d / f"{curve.SERVER_NAME}.key")
    except Exception as e:
        return _fail(getattr(e, "message", str(e)))
    allow = curve.AllowList(d)
    print(f"server {d}: public key {pub.decode()}")
    for title, table in (("clients", allow.clients), ("admins", allow.admins)):
        print(f"{title} ({len(table)}):")
        for key, name in sorted(table.items(), key=lambda kv: kv[1]):
            print(f"  {name:20s} {key.decode()}")
    return EXIT_OK


__all__ = ["add_parser"]
