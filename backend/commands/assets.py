"""`gen3dface assets info` and `gen3dface assets fetch`.

info:  which head models are installed, where, and which one a job would use.
fetch: download ICT-FaceKit from its public GitHub repository into the user data folder and
       convert it (`--from DIR|ZIP` converts a copy you downloaded yourself, e.g. offline).
"""
from __future__ import annotations

import json
import sys

from .. import assets

OFFLINE_HELP = (
    "Could not download ICT-FaceKit ({error}).\n"
    "To install it by hand:\n"
    f"  1. on a machine with internet, download {assets.ICT_ZIP_URL}\n"
    f"     (or clone {assets.ICT_REPO_URL});\n"
    "  2. copy it here and run:  gen3dface assets fetch --from PATH/TO/ICT-FaceKit[.zip]\n"
    "Without a head model, jobs fall back to mediapipe's face mesh (front of the face only,\n"
    "no blendshapes).")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("assets", help="show or install the head-model assets",
                              description=__doc__)
    sub = p.add_subparsers(dest="assets_command", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="what is installed and where")
    info.add_argument("--assets", default=None, help="extra assets folder to search first")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=handle_info)
    fetch = sub.add_parser("fetch", help="download and convert ICT-FaceKit")
    fetch.add_argument("--from", dest="source", default=None,
                       help="convert a local copy (repository folder, FaceXModel folder or ZIP) "
                            "instead of downloading")
    fetch.add_argument("--dest", default=None,
                       help=f"assets folder to install into (default: {assets.user_data_dir()})")
    fetch.add_argument("--url", default=assets.ICT_ZIP_URL, help="download URL")
    fetch.add_argument("--timeout", type=float, default=30.0)
    fetch.set_defaults(func=handle_fetch)


def handle_info(args) -> int:
    rows = assets.installed_assets(args.assets)
    chosen = assets.find_head_model_file(args.assets)
    if args.json:
        print(json.dumps({"searched": rows, "selected": None if chosen is None else
                          {"kind": chosen.kind, "path": str(chosen.path),
                           "origin": chosen.origin}}, indent=2))
        return 0
    print("Head-model assets (searched in this order):")
    for r in rows:
        state = f"installed ({r['bytes'] / 1e6:.1f} MB)" if r["present"] else "not found"
        print(f"  [{r['origin']}] {r['kind']:12s} {r['path']}: {state}")
    if chosen:
        print(f"Jobs use: {chosen.kind} from {chosen.path}")
    else:
        print("No head model installed: jobs fall back to mediapipe's face mesh (front of the "
              "face only, no blendshapes).\nInstall ICT-FaceKit with:  gen3dface assets fetch")
    return 0


def handle_fetch(args) -> int:
    def progress(done, total):
        if sys.stderr.isatty():
            print(f"\r  {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        if args.source:
            out = assets.install_ict_from(args.source, args.dest, progress)
        else:
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory() as tmp:
                print(f"Downloading {args.url} ...", file=sys.stderr)
                try:
                    z = assets.download(args.url, Path(tmp) / "ict-facekit.zip", args.timeout,
                                        lambda d, t: progress(f"{d / 1e6:.0f} MB",
                                                              f"{t / 1e6:.0f} MB" if t else "?"))
                except OSError as e:
                    print(OFFLINE_HELP.format(error=e), file=sys.stderr)
                    return 3
                print("\nConverting ...", file=sys.stderr)
                out = assets.install_ict_from(z, args.dest, progress)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"\nInstalled ICT-FaceKit: {out}")
    return 0
