"""The result as files: optimized.pb and a SavedModel, each checked before it counts."""

import shutil
from pathlib import Path


from leangraph import graphs
from leangraph.pipeline.verify import (
    compare_outputs,
    failure,
    gate_failure,
    output_checks,
    output_sqnr,
)
from leangraph.runner import join_examples


def export_savedmodel(graph_def, input_names, output_names, path):
    """Writes a frozen GraphDef as a SavedModel with a `serving_default` signature.

    The GraphDef is imported into a tf.compat.v1.wrap_function, pruned to the
    named inputs and outputs, and served by a tf.function whose arguments are
    named after the inputs and whose result is {output name: tensor}.
    """
    import tensorflow as tf

    graph_def = graphs.load_graph(graph_def)

    def imported():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(imported, [])
    feeds = [wrapped.graph.get_tensor_by_name(graphs.tensor_name(n)) for n in input_names]
    fetches = [wrapped.graph.get_tensor_by_name(graphs.tensor_name(n)) for n in output_names]
    pruned = wrapped.prune(feeds, fetches)
    specs = [tf.TensorSpec(t.shape, t.dtype, name=graphs.node_name(n))
             for t, n in zip(feeds, input_names)]
    keys = [graphs.node_name(n) for n in output_names]

    def serve(*args):
        results = pruned(*args)
        return {k: tf.identity(r) for k, r in zip(keys, results)}

    module = tf.Module()
    module.pruned = pruned
    module.serve = tf.function(serve, input_signature=specs)
    # No gradients: the graph is for inference, and a frozen tf.custom_gradient (Keras
    # 3's swish) names a gradient function by a process-wide counter, which may name
    # another model's function in this process, whose captures TF then refuses to save.
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": module.serve.get_concrete_function()},
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    return Path(path)


def savedmodel_outputs(path, input_names, output_names, examples):
    """The `serving_default` outputs of a written SavedModel on every example, batch 1."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    got = [[] for _ in output_names]
    for i in range(len(examples[0])):
        kwargs = {graphs.node_name(n): tf.constant(x[i:i + 1])
                  for n, x in zip(input_names, examples)}
        result = fn(**kwargs)
        for slot, name in zip(got, output_names):
            slot.append(result[graphs.node_name(name)].numpy())
    return [join_examples(g) for g in got]


def check_savedmodel(path, variant, input_names, output_names, examples, reference, tolerance,
                     gates=None):
    """Why the written SavedModel fails the variant's own gate against the reference, or None.

    Graph and SavedModel run the same ops through different executors, so a
    bf16 graph's SavedModel differs from the graph by bf16 rounding: held to
    the fp32 tolerance it would fail although it is exactly as good.
    """
    outputs = savedmodel_outputs(path, input_names, output_names, examples)
    if gates is not None:
        reason = failure(output_checks(gates, variant, outputs, reference))
        return None if reason is None else f"its exported SavedModel fails its gates: {reason}"
    _, rel, top1 = compare_outputs(outputs, reference)
    reason = gate_failure(variant.gate, variant.precision, rel, top1, tolerance,
                          output_sqnr(outputs, reference))
    if reason:
        return f"its exported SavedModel fails the {variant.gate} gate: {reason}"
    return None


def write_result(staging, ranked, examples, reference, input_names, output_names, tolerance,
                  notes, prog, gates=None):
    """Writes optimized.pb and optimized_savedmodel/ of the first ranked variant whose
    SavedModel passes its gate; returns that variant, or None.

    A candidate that fails this late check is marked FAILED and the next one
    is tried, so one exporter difference never leaves the run without a result.
    """
    for v in ranked:
        for name in ("optimized.pb", "optimized_savedmodel"):
            target = staging / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        prog.item(f"optimized.pb, optimized_savedmodel/ ({v.name})")
        # Plain writes: the staging folder is private, and the move into OUTDIR is atomic.
        (staging / "optimized.pb").write_bytes(v.graph_def)
        export_savedmodel(v.graph_def, input_names, output_names, staging / "optimized_savedmodel")
        reason = check_savedmodel(staging / "optimized_savedmodel", v, input_names, output_names,
                                   examples, reference, tolerance, gates)
        if reason is None:
            return v
        v.fail(reason)
        nxt = ranked[ranked.index(v) + 1].name if v is not ranked[-1] else None
        notes.append(f"{v.name} was the fastest passing variant, but {reason}; "
                     + (f"falling back to {nxt}" if nxt else "no other variant is left"))
    return None

