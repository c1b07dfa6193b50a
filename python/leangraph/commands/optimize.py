"""`leangraph optimize`: freeze, transform, verify, time and report in one command."""

import sys

from leangraph.commands.freeze import input_shapes_from
from leangraph.optimize import DEFAULT_MODEL, Interrupted, optimize
from leangraph.pipeline.options import OPTIMIZE, keywords


# Exit status when the run finished but no variant passed verification.
EXIT_NO_RESULT = 3


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "optimize",
        help="freeze, transform, verify, benchmark and report, in one command",
        description=(
            "Freeze a model (Keras, SavedModel or frozen graph), apply TF's and leangraph's "
            "recipes, verify every variant against Keras (or, without Keras, the frozen graph) "
            "on the same inputs, time them side by side and write optimized.pb, "
            "optimized_savedmodel/, report.md, report.json and latency.png into OUTDIR. "
            f"Without MODEL it uses the embedded default, {DEFAULT_MODEL} at 299x299."
        ),
    )
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL",
                        help=".keras, legacy .h5, architecture .json, SavedModel directory, "
                             "frozen .pb/.pbtxt or TF1 checkpoint (with --outputs) (default: "
                             "Keras Xception, weights=None, 299x299)")
    for option in OPTIMIZE:
        option.add_to(parser)
    parser.set_defaults(func=run)


def run(args):
    try:
        report = optimize(model=args.model, progress=not args.no_progress,
                          **keywords(OPTIMIZE, args, {"input_shapes": input_shapes_from}))
    except Interrupted as exc:
        print(f"leangraph optimize: {exc}; {args.outdir} holds no partial file", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"leangraph optimize: interrupted; {args.outdir} holds no partial file",
              file=sys.stderr)
        return 130
    print()
    print(report.model)
    print(report.table())
    for note in report.notes:
        print(f"note: {note}")
    print(report.verdict())
    print()
    for name, path in report.files.items():
        print(f"wrote {path}")
    if not report.ok:
        print("leangraph optimize: no variant passed verification; no result written",
              file=sys.stderr)
        return EXIT_NO_RESULT
    return 0

