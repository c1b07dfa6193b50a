"""The data and gate options of optimize, tune and prune, declared once.

Every command that verifies or calibrates takes its examples the same way
(pipeline.data) and gates them with the same semantics (leangraph.metrics),
so their flags are declared here and read back with `data_settings`.
"""

import argparse

from leangraph.pipeline.data import DEFAULT_CALIBRATION_SAMPLES, DEFAULT_VERIFY_SAMPLES

DATA_HELP = (".npz (arrays named after the inputs, optional y / y_<output> labels; one array "
             "under any name for a one-input model), .npy, a folder of JPEG/PNG images, or a "
             "folder of one-example .npy/.npz files (each fed as is)")


def count(text):
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def add_data_arguments(parser, *, required=False, aliases=False, calibration=True, gates=True,
                       kinds=True, samples=True, accuracy_drop=True, max_accuracy_drop=0.5):
    """Adds --data, --calibration-data, --verify-samples, --calibration-samples,
    --output-kind, --gate, --max-accuracy-drop and --max-mae-increase.

    aliases: also accept the old names --image-dir and --calibration-dir.
    calibration: declare --calibration-data (tune calibrates on its split only).
    samples: declare --verify-samples and --calibration-samples (prune holds out its own
    share for fine-tuning).
    gates: declare --gate (optimize and tune gate every output against the original).
    kinds: declare --output-kind and --max-mae-increase (prune, which scores its one
    output against labels or the original, takes these without --gate).
    accuracy_drop: False where the command declares --max-accuracy-drop itself
    (prune, where it is one of two exclusive goals).
    """
    data_names = ["--data"] + (["--image-dir"] if aliases else [])
    parser.add_argument(*data_names, dest="data", required=required, default=None,
                        metavar="PATH",
                        help=f"the examples to verify and calibrate on: {DATA_HELP}")
    if calibration:
        calib_names = ["--calibration-data"] + (["--calibration-dir"] if aliases else [])
        parser.add_argument(*calib_names, dest="calibration_data", default=None,
                            metavar="PATH", help="calibrate int8 on these examples instead of "
                                                 "a split of --data (same forms)")
    if samples:
        parser.add_argument("--verify-samples", type=count, default=DEFAULT_VERIFY_SAMPLES,
                            metavar="N", help="examples held out for verification at most "
                                              "(default %(default)s)")
        parser.add_argument("--calibration-samples", type=count,
                            default=DEFAULT_CALIBRATION_SAMPLES, metavar="N",
                            help="examples int8 calibrates on at most (default %(default)s)")
    if kinds:
        parser.add_argument("--output-kind", action="append", default=None,
                            metavar="NAME=KIND", help="how an output is gated: classes, binary, "
                            "multilabel or regression (default: read from the op that produces "
                            "it; repeatable)")
    if gates:
        parser.add_argument("--gate", action="append", default=None,
                            metavar="NAME=[GATE:]VALUE", help="an output's threshold: its kind's "
                            "gate, or agreement, relative or sqnr (repeatable)")
    if accuracy_drop:
        parser.add_argument("--max-accuracy-drop", type=_non_negative, default=max_accuracy_drop,
                            metavar="POINTS", help="with labels: accuracy a variant may lose, "
                                                   "in percentage points (default %(default)s)")
    if kinds:
        parser.add_argument("--max-mae-increase", type=_non_negative, default=0.1,
                            metavar="FRACTION", help="with labels: how much a regression "
                            "output's MAE may grow, relative (default %(default)s)")


def data_settings(args):
    """The keyword arguments of optimize() these options set."""
    settings = {"data": args.data, "calibration_data": args.calibration_data,
                "verify_samples": args.verify_samples,
                "calibration_samples": args.calibration_samples,
                "output_kinds": args.output_kind, "gates": args.gate,
                "max_mae_increase": args.max_mae_increase}
    if getattr(args, "max_accuracy_drop", None) is not None:
        settings["max_accuracy_drop"] = args.max_accuracy_drop
    return settings
