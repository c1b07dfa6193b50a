"""`leangraph tune`: the fastest variant of a graph within an accuracy budget."""

from pathlib import Path

from leangraph import graphs
from leangraph._extras import require
from leangraph.commands.freeze import add_io_arguments, io_kwargs
from leangraph.pipeline.model import load_model
from leangraph.pipeline.options import TUNE, add_options, keywords
from leangraph.search.options import add_arguments, from_args
from leangraph.tune import tune


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
    add_io_arguments(parser)
    add_options(parser, TUNE, data={"required": True})
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
    result = tune(model, **keywords(TUNE, args), shared=shared,
                  record=Path(args.out) / "trials.json")
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
