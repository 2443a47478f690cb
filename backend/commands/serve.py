"""`gen3dface serve`: the backend service (ZeroMQ ROUTER, job queue, worker).

Security: messages are signed with a shared key (protocol/SPEC.md). Without --key-file the
server refuses to start unless --insecure is given, and --insecure binds loopback addresses
only unless --allow-insecure-remote is given as well (never do that on a shared network).
A non-loopback --bind also encrypts and authenticates every connection with ZeroMQ CURVE
(SPEC section 12): the server's key pair and allow-list come from --curve-dir (default
~/.config/gen3dface/server, made by `gen3dface keys init`); only clients whose public key is
on the allow-list get in, and each one's jobs are its own. --no-curve on such an address
needs --allow-plaintext-remote. Loopback binds stay on the HMAC key alone unless --curve.
State: job records and results live in --state-dir (default ~/.local/state/gen3dface/serve),
so a client's resubmission with the same idempotency key after a server restart finds its
job; --ephemeral keeps everything in memory instead.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

from .cli_support import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="run the backend service that Blender and `gen3dface submit` talk to",
        description="Run the Gen3D-Face backend service: a ZeroMQ ROUTER socket, a bounded job "
                    "queue and a worker running the pipeline on --device.")
    p.add_argument("--bind", default="tcp://127.0.0.1:5555",
                   help="ZeroMQ endpoint to listen on (default tcp://127.0.0.1:5555)")
    p.add_argument("--key-file", help="shared key file (owner-only permissions); see --new-key-file")
    p.add_argument("--new-key-file", metavar="PATH",
                   help="create a new random key file at PATH (mode 0600), then serve with it")
    p.add_argument("--insecure", action="store_true",
                   help="accept unsigned messages (loopback development only)")
    p.add_argument("--allow-insecure-remote", action="store_true",
                   help="with --insecure: also allow a non-loopback --bind (dangerous)")
    p.add_argument("--curve-dir", metavar="DIR",
                   help="CURVE key folder: server key pair, clients/ and admins/ allow-lists "
                        "(default ~/.config/gen3dface/server; `gen3dface keys init` makes it)")
    curve = p.add_mutually_exclusive_group()
    curve.add_argument("--curve", dest="curve", action="store_true", default=None,
                       help="use CURVE on a loopback bind too (it is always on for other binds)")
    curve.add_argument("--no-curve", dest="curve", action="store_false",
                       help="no CURVE on a non-loopback bind: needs --allow-plaintext-remote")
    p.add_argument("--allow-plaintext-remote", action="store_true",
                   help="with --no-curve: serve a network address unencrypted, every client "
                        "one identity (photos and heads readable on the network)")
    p.add_argument("--queue", type=int, default=8, help="jobs that may wait (default 8); more get QUEUE_FULL")
    p.add_argument("--device", default="cpu", help="torch device for the pipeline: cpu or cuda")
    p.add_argument("--assets", help="folder with the head model and weights")
    p.add_argument("--checkpoint", help="folder of trained Gen3D-Face weights")
    p.add_argument("--keep-results", type=float, default=3600.0, metavar="S",
                   help="keep finished jobs' results this many seconds for fetch_result (default 3600)")
    p.add_argument("--keep-results-mb", type=float, default=4096.0,
                   help="and at most this many MB of results (oldest first; default 4096)")
    p.add_argument("--on-client-lost", choices=("cancel", "keep"), default="keep",
                   help="what to do with the jobs of a client that stopped heartbeating (default keep: results wait for fetch_result)")
    p.add_argument("--state-dir", help="folder for job records and kept results "
                   "(default ~/.local/state/gen3dface/serve)")
    p.add_argument("--ephemeral", action="store_true",
                   help="keep job records and results in memory only (lost on restart)")
    p.add_argument("--heartbeat", type=float, default=1.0, metavar="S",
                   help="heartbeat period in seconds (a client is lost after 3 missed beats)")
    p.add_argument("-v", "--verbose", action="store_true")
    from ..service.ray_backend import add_arguments as add_ray_arguments
    add_ray_arguments(p)               # --ray, --ray-workers, ... (backend/service/ray_backend.py)
    p.set_defaults(func=handle)


def is_loopback_endpoint(endpoint: str) -> bool:
    """tcp://127.x.x.x:P, tcp://[::1]:P, tcp://localhost:P, ipc://..., inproc://... -> True."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = urlsplit(endpoint).hostname or ""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False                   # "*", interface names, host names: not provably loopback


def security_problem(args) -> str | None:
    """Why these arguments must not start a server, or None."""
    if args.insecure and (args.key_file or args.new_key_file):
        return "give either --key-file/--new-key-file or --insecure, not both"
    if not (args.key_file or args.new_key_file or args.insecure):
        return ("no key: give --key-file FILE (or --new-key-file FILE to create one), or "
                "--insecure for unsigned development use on loopback")
    if args.insecure and not is_loopback_endpoint(args.bind) and not args.allow_insecure_remote:
        return (f"--insecure with a non-loopback address ({args.bind}) would let anyone on the "
                "network run jobs; use a key file, bind tcp://127.0.0.1:PORT, or add "
                "--allow-insecure-remote if you really mean it")
    if not uses_curve(args) and not is_loopback_endpoint(args.bind) \
            and not args.allow_plaintext_remote:
        return (f"--no-curve with a non-loopback address ({args.bind}) would send photos and "
                "heads unencrypted and let every key holder see every job; drop --no-curve "
                "(CURVE: `gen3dface keys init`), or add --allow-plaintext-remote if you really "
                "mean it")
    return None


def uses_curve(args) -> bool:
    """CURVE: always on a non-loopback bind unless --no-curve; on loopback with --curve or an
    explicit --curve-dir."""
    if getattr(args, "curve", None) is not None:
        return bool(args.curve)
    return not is_loopback_endpoint(args.bind) or bool(getattr(args, "curve_dir", None))


def handle(args) -> int:
    from ...protocol import signing
    from ..service.config import ServiceConfig, default_state_dir
    from ..service.server import Server, StateDirLocked
    from ..service.workload import head_pipeline_factory

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    problem = security_problem(args)
    if problem:
        print(f"gen3dface serve: refusing to start: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.queue < 1:
        print("gen3dface serve: --queue must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.new_key_file and Path(args.new_key_file).expanduser().exists():
        print(f"gen3dface serve: key file {args.new_key_file} already exists; not overwriting "
              f"it (clients may use it): use --key-file {args.new_key_file} to reuse it, or "
              "give --new-key-file a new path", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.new_key_file:
            key = signing.generate_key_file(args.new_key_file)
            print(f"wrote a new key file {args.new_key_file} (give it to clients)", file=sys.stderr)
        else:
            key = signing.load_key(args.key_file) if args.key_file else None
    except Exception as e:           # ProtocolError(AUTH) with a clear message
        print(f"gen3dface serve: {getattr(e, 'message', e)}", file=sys.stderr)
        return EXIT_USAGE
    server_curve = None
    if uses_curve(args):
        from ...protocol.curve import ServerCurve, default_server_dir
        folder = Path(args.curve_dir).expanduser() if args.curve_dir else default_server_dir()
        try:
            server_curve = ServerCurve.load(folder)
        except Exception as e:       # ProtocolError(AUTH): no key pair, bad permissions
            print(f"gen3dface serve: refusing to start: CURVE is on for {args.bind}, but "
                  f"{getattr(e, 'message', e)}", file=sys.stderr)
            return EXIT_USAGE
        if not (server_curve.allow.clients or server_curve.allow.admins):
            print(f"gen3dface serve: warning: no client is allowed yet ({folder}/clients/ is "
                  "empty): `gen3dface keys client NAME --allow`", file=sys.stderr)
    state_dir = None if args.ephemeral else Path(args.state_dir or default_state_dir())
    config = ServiceConfig(bind=args.bind, key=key, insecure=args.insecure, queue_size=args.queue,
                           keep_results_s=args.keep_results,
                           keep_results_bytes=int(args.keep_results_mb * (1 << 20)),
                           on_client_lost=args.on_client_lost, state_dir=state_dir,
                           heartbeat_s=args.heartbeat, client_timeout_s=3 * args.heartbeat,
                           curve=server_curve)
    factory = head_pipeline_factory(args.assets, args.device, args.checkpoint)
    if getattr(args, "ray", None):     # jobs on a Ray cluster's worker actors
        factory = ray_factory(args)
        if isinstance(factory, int):
            return factory
    try:
        server = Server(config, factory)
    except StateDirLocked as e:
        print(f"gen3dface serve: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as e:
        print(f"gen3dface serve: the pipeline cannot be loaded: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    try:
        endpoint = server.start()
    except Exception as e:          # zmq.ZMQError: address in use, bad endpoint
        print(f"gen3dface serve: cannot bind {args.bind}: {e}", file=sys.stderr)
        return EXIT_USAGE
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.stop())
    security = 'INSECURE, unsigned' if args.insecure else 'signed'
    if server_curve is not None:
        security += (f" + CURVE, {len(server_curve.allow.clients)} clients and "
                     f"{len(server_curve.allow.admins)} admins allowed")
    print(f"gen3dface serve: listening on {endpoint} ({security}"
          f", device {args.device}, queue {args.queue}, state {state_dir or 'in memory'})",
          file=sys.stderr, flush=True)
    server.serve_forever()
    print("gen3dface serve: stopped", file=sys.stderr)
    return EXIT_OK


def ray_factory(args):
    """`serve --ray` (backend/service/ray_backend.py): the Server's workload factory, or
    serve's exit status after printing why not (4: the cluster cannot be reached; 2: Ray
    missing, bad settings, no resources)."""
    from ..service.ray_backend import (EXIT_CLUSTER_UNREACHABLE, ClusterUnreachable,
                                       RayBackendError, backend_from_args)

    try:
        backend = backend_from_args(args, args.queue)
    except ClusterUnreachable as e:
        print(f"gen3dface serve: {e}", file=sys.stderr, flush=True)
        if e.hung:                     # ray.init is still blocked in its thread: do not wait on it
            sys.stdout.flush()
            os._exit(EXIT_CLUSTER_UNREACHABLE)
        return EXIT_CLUSTER_UNREACHABLE
    except RayBackendError as e:
        print(f"gen3dface serve: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    devices = sorted({str(i.get("device")) for i in [backend.first_info]})
    print(f"gen3dface serve: Ray cluster {args.ray} ({backend.resources}): {backend.n_workers} "
          f"worker actors x ({backend.settings.cpus_per_worker:g} CPU, {backend.num_gpus:g} GPU), "
          f"pipeline on {', '.join(devices)}", file=sys.stderr, flush=True)
    return lambda: backend
