"""`leangraph optimize`: freeze, transform, verify, time and report in one command."""

import argparse
import sys

from leangraph.pipeline.data_options import count

# Exit status when the run finished but no variant passed verification.
EXIT_NO_RESULT = 3


def _tolerance(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_parser(subparsers):
    from leangraph.commands.freeze import add_io_arguments
    from leangraph.optimize import DEFAULT_IMAGES, DEFAULT_MODEL

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
    parser.add_argument("-o", "--out", "--outdir", dest="outdir", default="leangraph-optimized",
                        help="output folder, written atomically (default: %(default)s)")
    parser.add_argument("--signature", default=None,
                        help="SavedModel signature (default serving_default)")
    parser.add_argument("--input-shape", "--input_shape", action="append", metavar="NAME:SHAPE",
                        help="fix an input's shape, e.g. image:1,224,224,3 (repeatable; the name "
                             "may be left out for a one-input model)")
    parser.add_argument("--weights", default=None,
                        help="weights file for an architecture .json")
    add_io_arguments(parser)
    parser.add_argument("--batch", type=count, default=None, metavar="N",
                        help="also time batch N (the report gives latency and throughput)")
    parser.add_argument("--recipe", default="deploy",
                        help="leangraph recipe (default: %(default)s)")
    parser.add_argument("--precision", "--precisions", dest="precision", default="fp32,bf16,int8",
                        help="precisions the result may have, of fp32, bf16 and int8 "
                             "(default: %(default)s)")
    parser.add_argument("--baseline", default=None, metavar="MODEL",
                        help="the model MODEL was made from (e.g. the original `leangraph prune` "
                             "pruned; by default the one a prune report.json beside MODEL "
                             "names): each step's speed-up from it is timed and reported")
    parser.add_argument("--int8-weight-bits", type=int, choices=(7, 8), default=None,
                        help="int8: Conv2D weights on unsigned inputs in 7 or 8 bits (default: "
                             "8 where this CPU has VNNI, else 7; 7 makes a graph that is right "
                             "on CPUs without VNNI too)")
    parser.add_argument("--images", type=count, default=None,
                        help=f"without --data: verify on N invented inputs (default: "
                             f"{DEFAULT_IMAGES}); int8 is then timed, never the result")
    from leangraph.pipeline.data_options import add_data_arguments

    add_data_arguments(parser, aliases=True)
    parser.add_argument("--preprocess", default=None, metavar="NAME",
                        help="preprocessing mode or model family (tf, caffe, torch, none, "
                             "xception, resnet50, ...); default: the model family's")
    parser.add_argument("--runs", type=count, default=None,
                        help="timed runs per variant (default: the number of images)")
    parser.add_argument("--threads", type=count, default=None, help="intra-op threads")
    parser.add_argument("--cpus", default=None, metavar="LIST",
                        help="pin to these CPUs, e.g. 0,1 or 0-3")
    parser.add_argument("--tolerance", type=_tolerance, default=1e-4,
                        help="fp32 gate: max relative difference from Keras (default: %(default)g)")
    parser.add_argument("--unsafe", action="store_true",
                        help="allow Keras files that run stored Python code (Lambda layers)")
    parser.add_argument("--allow-io-ops", action="store_true",
                        help="run graphs that hold file-system, process or Python-calling ops")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    parser.set_defaults(func=run)


def run(args):
    from leangraph.commands.freeze import input_shapes_from, io_kwargs
    from leangraph.pipeline.data_options import data_settings
    from leangraph.optimize import Interrupted, optimize

    try:
        report = optimize(
            model=args.model,
            outdir=args.outdir,
            recipe=args.recipe,
            precisions=args.precision,
            images=args.images,
            preprocess=args.preprocess,
            threads=args.threads,
            cpus=args.cpus,
            tolerance=args.tolerance,
            unsafe=args.unsafe,
            allow_io_ops=args.allow_io_ops,
            runs=args.runs,
            progress=not args.no_progress,
            signature=args.signature,
            input_shapes=input_shapes_from(args.input_shape),
            weights=args.weights,
            int8_weight_bits=args.int8_weight_bits,
            batch=args.batch,
            baseline=args.baseline,
            **data_settings(args),
            **io_kwargs(args),
        )
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

