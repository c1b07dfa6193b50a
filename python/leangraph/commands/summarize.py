"""`leangraph summarize`: summarize_graph's report plus multiply-accumulates."""

import json

from leangraph.commands.freeze import add_model_arguments, freeze_kwargs
from leangraph.summary import summarize


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "summarize",
        help="inputs, outputs, op counts, parameters and MACs of a graph",
        description=(
            "Summarize a frozen graph (.pb/.pbtxt), or a Keras model / SavedModel, "
            "which is frozen first: inputs, outputs, op-type counts, control edges, "
            "constant parameters, multiply-accumulates per example, and a ready "
            "leangraph-bench command line."
        ),
    )
    parser.add_argument(
        "model", help=".pb/.pbtxt graph, .keras/.h5/.json model or SavedModel directory"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def run(args):
    summary = summarize(args.model, **freeze_kwargs(args))
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(summary)
    return 0
