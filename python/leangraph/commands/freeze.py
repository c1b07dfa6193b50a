"""`leangraph freeze`: a Keras model, SavedModel or architecture+weights to a clean frozen .pb."""

from leangraph import graphs
from leangraph.errors import FreezeError
from leangraph.freeze import freeze
from leangraph.pipeline.options import IO


def parse_input_shape(text):
    """'NAME:1,299,299,3' -> ('NAME', '1,299,299,3'); a bare '1,299,299,3' -> (None, ...)."""
    name, sep, dims = text.rpartition(":")
    if not sep:
        return None, text
    if not name:
        raise FreezeError(f"--input-shape {text!r}: the name before ':' is empty")
    return name, dims


def input_shapes_from(values):
    """The input_shapes argument of freeze() from repeated --input-shape values."""
    if not values:
        return None
    pairs = [parse_input_shape(v) for v in values]
    bare = [dims for name, dims in pairs if name is None]
    if bare:
        if len(pairs) != 1:
            raise FreezeError(
                "with several --input-shape values, each needs a name: NAME:1,224,224,3"
            )
        return bare[0]
    shapes = {}
    for name, dims in pairs:
        if name in shapes:
            raise FreezeError(f"--input-shape gives '{name}' twice")
        shapes[name] = dims
    return shapes


def batch_size_from(text):
    if text is None:
        return 1
    if text.lower() in ("none", "dynamic", "?"):
        return None
    if not text.isdigit() or int(text) < 1:
        raise FreezeError(f"--batch-size must be a positive integer or 'none', got {text!r}")
    return int(text)


def add_io_arguments(parser):
    """--inputs, --outputs and --feed: every command that loads a model takes them (declared
    once, in pipeline.options.IO)."""
    for option in IO:
        option.add_to(parser)


def io_kwargs(args):
    """The inputs=, outputs= and feeds= of freeze() / load_model() from add_io_arguments."""
    return {"inputs": args.inputs, "outputs": args.outputs, "feeds": args.feed}


def add_model_arguments(parser):
    """The loading options `freeze` and `summarize` share."""
    add_io_arguments(parser)
    parser.add_argument(
        "--input-shape", "--input_shape", action="append", metavar="NAME:SHAPE",
        help="fix an input's shape, e.g. input_layer:1,299,299,3 (repeatable; the name "
        "may be left out for a one-input model)",
    )
    parser.add_argument(
        "--batch", "--batch-size", "--batch_size", dest="batch_size", metavar="N",
        help="batch dimension for inputs not given by --input-shape (default 1; 'none' "
        "keeps it dynamic)",
    )
    parser.add_argument("--signature", help="SavedModel signature (default serving_default)")
    parser.add_argument("--weights", help="weights file for an architecture .json")
    parser.add_argument(
        "--unsafe", action="store_true",
        help="allow Keras files that store Python bytecode (Lambda layers); loading "
        "them runs code from the file",
    )


def freeze_kwargs(args):
    return {
        "input_shapes": input_shapes_from(args.input_shape),
        "batch_size": batch_size_from(args.batch_size),
        "signature": args.signature,
        "unsafe": args.unsafe,
        "weights": args.weights,
        **io_kwargs(args),
    }


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "freeze",
        help="freeze a Keras model or SavedModel into a clean GraphDef",
        description=(
            "Freeze a Keras model (.keras, full-model .h5, or architecture .json with "
            "--weights) or a SavedModel directory for inference: weights become "
            "constants, training-only behaviour is off, and the graph is cleaned so "
            "TF's transforms can rewrite it."
        ),
    )
    parser.add_argument("model", help="a .keras / .h5 / .json file, a SavedModel directory, a "
                                      "frozen .pb / .pbtxt or a TF1 checkpoint (.meta, prefix or "
                                      "folder; needs --outputs)")
    parser.add_argument("-o", "--out", "--output", dest="output", required=True,
                        help="where to write the .pb (or .pbtxt)")
    parser.add_argument("--output-names", "--output_names", help="comma-separated output names")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def run(args):
    from pathlib import Path

    out = Path(args.output)
    model = Path(args.model)
    inside = model.is_dir() and model.resolve() in out.resolve().parents
    if graphs.same_file(model, out) or inside:
        raise FreezeError(
            f"--output {out} is (inside) the model {model}; refusing to overwrite the input"
        )
    if out.is_dir():
        raise FreezeError(f"--output {out} is a directory; give a file name such as model.pb")
    names = [n.strip() for n in args.output_names.split(",")] if args.output_names else None
    frozen = freeze(model, output_names=names, **freeze_kwargs(args))
    frozen.save(out)
    print(f"wrote {out} ({len(frozen.graph_def.node)} nodes)")
    for role, infos in (("input", frozen.inputs), ("output", frozen.outputs)):
        for info in infos:
            print(f"  {role:<6} {info.name}  {info.dtype}  {info.shape_text()}")
    for note in frozen.notes:
        print(f"note: {note}")
    return 0
