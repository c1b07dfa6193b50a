"""The `leangraph` command. Each subcommand lives in leangraph/commands/<name>.py and
defines `add_parser(subparsers)`, which registers itself and sets `func(args) -> int`."""

import argparse
import importlib
import pkgutil
import sys

from leangraph.errors import LeangraphError


def build_parser():
    from leangraph import commands
    from leangraph._version import __version__

    parser = argparse.ArgumentParser(
        prog="leangraph",
        description="Freeze, rewrite, verify and time TensorFlow graphs for fast CPU inference.",
    )
    parser.add_argument("--version", action="version", version=f"leangraph {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"leangraph.commands.{info.name}")
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except LeangraphError as exc:
        print(f"leangraph {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"leangraph {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
