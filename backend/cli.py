"""The `gen3dface` command.

Each subcommand lives in its own module under backend/commands/ and exposes
`add_parser(subparsers)`, which registers its argparse parser with `func=handler`;
`handler(args) -> int` returns the process exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("run", "submit", "serve", "keys", "assets", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gen3dface",
        description="One photo of a face to a rigged, textured 3D head (GLB).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
