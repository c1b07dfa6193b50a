"""Named transform recipes: TensorFlow's documented ones, verbatim, and leangraph's `deploy`.

RECIPES maps a name to a transform string; `{shape}` stands for the input
shape that strip_unused_nodes pins (TF's docs write "1,299,299,3" there).
recipe(name, graph) fills it in from the graph's Placeholder.
"""

from leangraph import graphs
from leangraph.errors import UsageError


_SHAPE = ', shape="{shape}"'

RECIPES = {
    # TF's recipe plus leangraph's transforms. The freeze artifacts go first,
    # so nothing is hidden behind a control edge; fold_keras_batch_norms
    # evaluates the batch-norm constants itself, so TF's whole-graph
    # fold_constants is not needed before it (it is most of TF's recipe's
    # time); TF's own batch-norm folds would find nothing left to fold.
    # remove_identity_chains does remove_nodes' work (Identity, CheckNumerics)
    # safely around control flow, in one pass. inline_grouped_convs goes
    # first: the XLA calls Keras wraps grouped convs in are stateful, so
    # strip_freeze_artifacts would keep their control edges.
    "deploy": (
        "inline_grouped_convs strip_freeze_artifacts remove_identity_chains(check_numerics=true) "
        f"strip_unused_nodes(type=float{_SHAPE}) fold_keras_batch_norms fuse_matmul_reshape "
        "fuse_bias_add fuse_layer_norm"
    ),
    # "Optimizing for Deployment" (tensorflow/tools/graph_transforms README).
    "tf-deploy": (
        f"strip_unused_nodes(type=float{_SHAPE}) remove_nodes(op=Identity, op=CheckNumerics) "
        "fold_constants(ignore_errors=true) fold_batch_norms fold_old_batch_norms"
    ),
    # "Eight-bit calculations" (same README).
    "tf-eightbit": (
        f"add_default_attributes strip_unused_nodes(type=float{_SHAPE}) "
        "remove_nodes(op=Identity, op=CheckNumerics) fold_constants(ignore_errors=true) "
        "fold_batch_norms fold_old_batch_norms quantize_weights quantize_nodes "
        "strip_unused_nodes sort_by_execution_order"
    ),
}


def _input_shape(graph):
    """"1,224,224,3" for a graph with one Placeholder of known rank, else None.

    An unknown batch dimension becomes 1, as in TF's recipe; any other
    unknown dimension leaves the shape unpinned.
    """
    graph_def = graphs.load_graph(graph)
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    if len(placeholders) != 1:
        return None
    shape = placeholders[0].attr["shape"].shape
    if shape.unknown_rank or not shape.dim:
        return None
    dims = [d.size for d in shape.dim]
    if dims[0] < 0:
        dims[0] = 1
    if any(d < 0 for d in dims):
        return None
    return ",".join(str(d) for d in dims)


def check_name(name, flag=None, also=()):
    """Raises UsageError unless `name` is a recipe (or one of `also`, e.g. "none").

    flag: the option that gave it ("--recipe"), named first in the message."""
    if name in RECIPES or name in also:
        return name
    known = ", ".join(list(also) + sorted(RECIPES))
    prefix = f"{flag}: " if flag else ""
    raise UsageError(f"{prefix}unknown recipe '{name}'; known recipes: {known}")


def recipe_for(name, graph):
    """The transform string of recipe `name` (checked, as tune and `leangraph study` name
    them) for `graph`; "none" is not a recipe here."""
    check_name(name, also=("none",))
    return recipe(name, graph)


def recipe(name, graph=None):
    """The transform string of recipe `name`, ready for leangraph.transform().

    graph (anything load_graph accepts): its single Placeholder's shape fills
    `{shape}`. Without a graph, or when the shape is not known, the shape
    parameter is left out and strip_unused_nodes keeps the Placeholder's own.
    Raises UsageError for an unknown name, listing the known ones.
    """
    check_name(name)
    text = RECIPES[name]
    shape = _input_shape(graph) if graph is not None else None
    if shape is None:
        return text.replace(_SHAPE, "")
    return text.replace("{shape}", shape)
