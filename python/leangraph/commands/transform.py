"""`leangraph transform`: TF's transform_graph command line, flag for flag."""

from leangraph import graphs
from leangraph.errors import TransformError
from leangraph.recipes import recipe
from leangraph.transform import transform


def _names(text):
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "transform",
        help="apply graph transforms (transform_graph's flags)",
        description=(
            "Apply graph transforms to a frozen GraphDef. Accepts transform_graph's flags, "
            "so its recipes run verbatim; TensorFlow's and leangraph's transforms mix."
        ),
    )
    parser.add_argument("--in_graph", "--in-graph", required=True, help=".pb or .pbtxt input")
    parser.add_argument("--out_graph", "--out-graph", required=True, help="where to write the result")
    parser.add_argument("--inputs", default="", help="comma-separated input nodes (default: Placeholders)")
    parser.add_argument("--outputs", default="", help="comma-separated output nodes (default: sinks)")
    steps = parser.add_mutually_exclusive_group(required=True)
    steps.add_argument("--transforms", help='e.g. "fold_constants(ignore_errors=true) fold_batch_norms"')
    steps.add_argument(
        "--recipe",
        help="a named recipe instead of --transforms: deploy, tf-deploy or tf-eightbit "
        "(the input shape is taken from the graph's Placeholder)",
    )
    parser.add_argument(
        "--output_as_text", "--output-as-text", nargs="?", const="true", default="false",
        type=lambda v: v.lower() in ("1", "true", "yes"),
        help="write a text GraphDef",
    )
    parser.add_argument("--allow-io-ops", "--allow_io_ops", action="store_true",
                        help="accept graphs with file-system, process or Python-calling ops "
                             "(fold_constants would run them)")
    parser.set_defaults(func=run)


def run(args):
    if graphs.same_file(args.in_graph, args.out_graph):
        raise TransformError(
            f"--out_graph {args.out_graph} is the input graph; refusing to overwrite the input"
        )
    transforms = args.transforms
    if args.recipe is not None:
        transforms = recipe(args.recipe, args.in_graph)
    result = transform(args.in_graph, transforms, _names(args.inputs), _names(args.outputs),
                       allow_io_ops=args.allow_io_ops)
    graphs.save_graph(result, args.out_graph, as_text=args.output_as_text)
    print(f"wrote {args.out_graph} ({len(result.node)} nodes)")
    return 0
