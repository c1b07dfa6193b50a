"""`leangraph tune`: the fastest variant of a graph within an accuracy budget."""

from pathlib import Path

from leangraph import graphs
from leangraph._extras import require
from leangraph.commands.freeze import add_io_arguments, io_kwargs
from leangraph.pipeline.data_options import add_data_arguments
from leangraph.pipeline.model import load_model
from leangraph.search.options import add_arguments, from_args
from leangraph.tune import tune


def _list(text, kind=str):
    return [kind(v.strip()) for v in text.split(",") if v.strip()] if text else None


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "tune",
        help="search recipe x precision x threads for the fastest graph within an accuracy budget",
        description=(
            "Searches recipe x precision x threads (Optuna TPE; small spaces are enumerated) for "
            "the fastest variant of MODEL whose accuracy on --data stays within "
            "--max-accuracy-drop points of the fp32 original. Writes every trial to "
            "OUT/trials.json, the Pareto plot to OUT/pareto.png and the winner to OUT/best.pb."
        ),
    )
    parser.add_argument("model", metavar="MODEL",
                        help="frozen graph (.pb / .pbtxt), Keras file or SavedModel directory")
    add_data_arguments(parser, required=True)
    add_io_arguments(parser)
    parser.add_argument("--trials", type=int, default=24, help="trial budget (default 24)")
    parser.add_argument("--recipes", default="", help="comma-separated recipe names (default all)")
    parser.add_argument("--precisions", default="",
                        help="comma-separated: fp32, bf16, bf16-grappler, int8-weights, int8, "
                             "int8@DB (int8 whose layers below DB of SQNR stay float), int8-tf")
    parser.add_argument("--threads", default="", help="comma-separated intra-op thread counts")
    parser.add_argument("--batch", "--batch-size", dest="batch_size", type=int, default=1,
                        help="examples per timed run")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N examples of --data (0 = all)")
    parser.add_argument("-o", "--out", default="tune-out", help="output folder (default tune-out)")
    parser.add_argument("--seed", type=int, default=0)
    add_arguments(parser)
    parser.set_defaults(func=run)


def _model(args):
    """MODEL, frozen first when --inputs, --outputs or --feed choose its ends."""
    ends = io_kwargs(args)
    if not any(ends.values()):
        return args.model
    return load_model(args.model, batch_size=None, **ends).graph_def


def run(args):
    # A missing extra is said before the model and data are read.
    require("optuna", "leangraph tune")
    shared = from_args(args)  # before anything is written: a bad --storage leaves no trace
    model = _model(args)
    result = tune(
        model, args.data,
        max_accuracy_drop=args.max_accuracy_drop,
        max_mae_increase=args.max_mae_increase,
        output_kinds=args.output_kind,
        gates=args.gate,
        calibration=args.calibration_data,
        limit=args.limit or None,
        n_trials=args.trials,
        recipes=_list(args.recipes),
        precisions=_list(args.precisions),
        threads=_list(args.threads, int),
        batch_size=args.batch_size,
        seed=args.seed,
        record=Path(args.out) / "trials.json",
        shared=shared,
        verify_samples=args.verify_samples,
        calibration_samples=args.calibration_samples,
    )
    out = Path(args.out)
    plot = result.plot(out / "pareto.png")
    graphs.save_graph(result.best_graph, out / "best.pb")
    print(result.table())
    best = result.best
    print(f"best: {result.best_line()}")
    if best.precision == "bf16-grappler":
        print("note: this variant needs Grappler's auto_mixed_precision_onednn_bfloat16 "
              "session option at run time")
    print(f"wrote {out / 'best.pb'}, {out / 'trials.json'}, {plot}")
    return 0
