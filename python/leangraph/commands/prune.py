"""`leangraph prune`: a smaller Keras model, fine-tuned by distillation from the original."""

from pathlib import Path

from leangraph.errors import PruneError
from leangraph.pipeline.options import PRUNE, PRUNE_GOAL, add_options, keywords
from leangraph.prune.api import prune
from leangraph.prune.data import output_kind, read_data
from leangraph.prune.report import write_outputs
from leangraph.search.options import SHARED, add_arguments


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "prune",
        help="remove channels from a Keras model and fine-tune it by distillation",
        description=(
            "Removes whole channels (filters, units) from MODEL, coupled channels together, "
            "or with --method lowrank factorises its Dense and Conv2D layers where that is "
            "measurably faster, "
            "and fine-tunes the result by distillation from MODEL on --data. 15 % of --data is "
            "held out for early stopping and for the accuracy the report states. Writes "
            "OUT/pruned.keras, OUT/report.json and OUT/report.md (and OUT/pareto.png after a "
            "search), all or nothing."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="Keras model (.keras or .h5)")
    add_options(parser, PRUNE, data={"required": True})
    add_options(parser.add_mutually_exclusive_group(required=True), PRUNE_GOAL)
    add_arguments(
        parser,
        description="with --max-accuracy-drop: many processes, on any machines, share one "
                    "Optuna study; each writes the study's best candidate, fine-tuned",
        worker_help="join an existing study (same model, data and settings); --trials counts "
                    "COMPLETE trials study-wide")
    parser.set_defaults(func=run)


def run(args):
    if (args.storage is None) != (args.study is None):
        raise PruneError("--storage and --study go together")
    if (args.worker or args.resume) and args.storage is None:
        raise PruneError("--worker and --resume need --storage URL and --study NAME")

    model, x, y = read_data(args.model, args.data, args.preprocess, args.unsafe)
    if y is None:
        print("no labels (y) in --data: the held-out score is agreement with MODEL")
    pruned, report = prune(model, x, y, **keywords(PRUNE_GOAL + PRUNE + SHARED, args, {
        "output_kind": lambda kinds: output_kind(kinds, model)}))
    report.source = str(Path(args.model).resolve())  # what `leangraph optimize` stacks onto
    paths = write_outputs(pruned, report, args.out)
    what, before, after, change = report.score_rows()
    print(f"MACs {report.macs_before:,} -> {report.macs_after:,} ({report.macs_ratio:.3f}x); "
          f"{what} {before} -> {after} ({change})")
    if report.int8:
        print(f"int8: {report.int8['decision']}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
