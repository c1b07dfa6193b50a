"""The `leangraph` command. Each subcommand lives in leangraph/commands/<name>.py and
defines `add_parser(subparsers)`, which registers itself and sets `func(args) -> int`."""

import argparse
import importlib
import os
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
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TensorFlow's own log lines (hidden unless TF_CPP_MIN_LOG_LEVEL "
                             "is set)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"leangraph.commands.{info.name}")
        module.add_parser(subparsers)
    for sub in subparsers.choices.values():
        if "--verbose" not in sub._option_string_actions:
            # SUPPRESS: an unset sub-command flag must not reset `leangraph --verbose CMD`.
            sub.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="show TensorFlow's own log lines")
    return parser


def _quiet_tensorflow(verbose):
    """Keeps TF's C++ INFO/WARNING lines (the oneDNN notice, "Applying quantize_weights",
    ...) out of the command's own output, unless asked for; must run before TF loads."""
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    # TF's libraries print their oneDNN notice while they load, before any log level
    # applies (absl logs to stderr until initialised): load them with stderr closed.
    from leangraph._tfcheck import load_native, stderr_closed

    with stderr_closed():
        try:
            import tensorflow  # noqa: F401

            load_native()
        except Exception:  # noqa: BLE001 - the command itself reports what is wrong
            pass
    import logging
    import warnings

    # TF's Python logger prints deprecation notices for its own v1 APIs.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # Keras warns about how a model file's layers were written (a legacy .h5's
    # `input_shape=`, `input_length=`): two lines each, about nothing the user can change.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(tf_)?keras(\.|$)")


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _quiet_tensorflow(getattr(args, "verbose", False))
    try:
        return args.func(args) or 0
    except LeangraphError as exc:
        print(f"leangraph {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (TypeError, ValueError, OSError) as exc:
        # Bad input that reached a library check before ours: still one line, no traceback.
        print(f"leangraph {args.command}: error: {type(exc).__name__}: {_one_line(exc)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"leangraph {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
