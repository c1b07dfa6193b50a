"""TF1 `tf.train.Saver` checkpoints: finding the files, restoring them, freezing.

A TF1 model was shipped as a checkpoint: `PREFIX.meta` (the graph), `PREFIX.index`
and `PREFIX.data-*` (the variables), and a `checkpoint` state file naming the
latest prefix. The graph holds the training too (gradients, optimizer slots,
savers), so the outputs must be named; the freeze keeps only what they need.

Real checkpoints bend the layout: the prefix may be the folder itself (files named
`.meta`, `.index`, which a `*.meta` glob skips), and the state file often holds its
author's absolute path. Both are handled by looking at the files beside it.
"""

import os
import re
from pathlib import Path

from leangraph import graphs
from leangraph.errors import FreezeError
from leangraph.freezing.placeholders import is_dataset_op
from leangraph.runner import session as checked_session


_META = ".meta"
_INDEX = ".index"
_STEP = re.compile(r"-(\d+)$")
_DATA = re.compile(r"\.data-\d+-of-\d+$")
# Name scopes and ops that only train or save: what the candidate outputs leave out.
_TRAINING_SCOPES = ("gradients", "save", "Adam", "Momentum", "RMSProp", "Adagrad",
                    "GradientDescent", "Ftrl", "Adadelta", "train", "global_step")
_NOT_CANDIDATES = {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "VariableV2",
                   "Variable", "VarHandleOp", "Assign", "AssignVariableOp", "AssignAdd",
                   "AssignSub", "VarIsInitializedOp", "IsVariableInitialized", "SaveV2",
                   "RestoreV2", "MergeV2Checkpoints", "Identity", "ReadVariableOp", "Shape",
                   "Size", "Rank", "Assert"}


def is_checkpoint(path):
    """Whether `path` is a TF1 checkpoint: a .meta file, a prefix, or a folder holding one."""
    path = Path(path)
    if path.is_file():
        return path.name.endswith(_META) or _part_prefix(path) is not None
    if path.is_dir():
        return (path / "checkpoint").is_file() or any(_indexes(path))
    return Path(str(path) + _INDEX).is_file() or Path(str(path) + _META).is_file()


def _part_prefix(path):
    """The prefix of a checkpoint's .index or .data-* file, None for any other file."""
    text = str(path)
    if text.endswith(_INDEX):
        return text[: -len(_INDEX)]
    match = _DATA.search(path.name)
    return text[: len(text) - len(match.group(0))] if match else None


def _indexes(folder):
    """Checkpoint prefixes in a folder (dot-files included: a prefix may be the folder)."""
    try:
        return [str(folder / p.name[: -len(_INDEX)]) for p in folder.iterdir()
                if p.name.endswith(_INDEX) and p.is_file()]
    except OSError:
        return []


def _latest(prefixes):
    def key(prefix):
        step = _STEP.search(prefix)
        return (int(step.group(1)) if step else -1, os.path.getmtime(prefix + _INDEX))

    return max(prefixes, key=key)


def _from_state_file(folder):
    """The prefix the `checkpoint` state file names, found beside it when its path is stale."""
    state = folder / "checkpoint"
    if not state.is_file():
        return None, None
    match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', state.read_text(
        encoding="utf-8", errors="replace"), re.MULTILINE)
    if not match:
        return None, None
    named = match.group(1)
    candidate = named if os.path.isabs(named) else str(folder / named)
    if Path(candidate + _INDEX).is_file():
        return candidate, None
    at_folder = named.endswith("/")
    local = str(folder) + "/" if at_folder else str(folder / os.path.basename(named))
    if Path(local + _INDEX).is_file():
        which = f"{folder.name}/ itself is the prefix" if at_folder else Path(local).name
        return local, (f"the checkpoint state file names {named}, which is not here; "
                       f"used the files beside it ({which})")
    return None, f"the checkpoint state file names {named}, which is not here"


def locate(path):
    """(meta graph file, variables prefix, notes) for a .meta file, a prefix or a folder."""
    path = Path(path)
    notes = []
    if path.is_file() and not path.name.endswith(_META):
        prefix = _part_prefix(path)
        if prefix is None:
            raise FreezeError(f"{path} is not part of a TF1 checkpoint")
        path = Path(prefix)
        if prefix.endswith("/"):  # the folder is the prefix
            return _meta_for(prefix, notes)
    if path.is_file():
        prefix = str(path)[: -len(_META)]
        if not Path(prefix + _INDEX).is_file():
            found, note = _from_state_file(path.parent)
            prefix = found or (_latest(_indexes(path.parent)) if _indexes(path.parent) else None)
            if prefix is None:
                raise FreezeError(f"no variables beside {path}: {path.name[:-5]}.index is missing")
            notes.append(note or f"{path.name} has no .index of its own name; restored "
                                 f"{Path(prefix).name or '(the folder prefix)'}")
        return path, prefix, notes
    if path.is_dir():
        prefix, note = _from_state_file(path)
        if prefix is None:
            prefixes = _indexes(path)
            if not prefixes:
                raise FreezeError(f"{path} holds no checkpoint (no .index file)"
                                  + (f"; {note}" if note else ""))
            prefix = _latest(prefixes)
            if note:
                notes.append(f"{note}; used the latest checkpoint in the folder")
        elif note:
            notes.append(note)
    else:
        prefix = str(path)
    return _meta_for(prefix, notes)


def _meta_for(prefix, notes):
    """(meta graph file, prefix, notes): PREFIX.meta, or the one .meta file beside it."""
    meta = Path(prefix + _META)
    if not meta.is_file():
        metas = [p for p in meta.parent.iterdir() if p.name.endswith(_META)]
        if len(metas) != 1:
            raise FreezeError(
                f"no graph for the checkpoint {prefix}: {meta.name} is missing"
                + (f" and {len(metas)} other .meta files are beside it; pass one"
                   if metas else "; a checkpoint without its .meta graph cannot be frozen"))
        meta = metas[0]
        notes.append(f"the graph is {meta.name}, the variables {Path(prefix).name}")
    return meta, prefix, notes


def _read_meta(meta_path):
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    try:
        meta.ParseFromString(Path(meta_path).read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and OSError
        raise FreezeError(f"{meta_path} is not a TF1 meta graph: {exc}") from None
    return meta


def _training_node(node):
    scope = node.name.split("/", 1)[0]
    return (scope in _TRAINING_SCOPES or any(scope.startswith(s + "_") for s in _TRAINING_SCOPES)
            or node.op.startswith(("Apply", "ResourceApply")) or node.op.endswith("Summary"))


def candidate_outputs(graph_def):
    """Nodes that could be the model's outputs: what nothing but training consumes."""
    consumed = set()
    for node in graph_def.node:
        if not _training_node(node):
            consumed.update(i.lstrip("^").split(":")[0] for i in node.input)
    return [n.name for n in graph_def.node
            if n.name not in consumed and not _training_node(n)
            and n.op not in _NOT_CANDIDATES and not is_dataset_op(n.op)
            and not any(part in n.name for part in ("Initializer", "initial_value", "assert"))
            and not n.name.startswith(("init", "report_uninitialized"))]


def _import(meta, notes):
    """(graph, saver) from the meta graph; `_output_shapes` that contradict the graph
    (import refuses them) are dropped and the import retried."""
    import tensorflow as tf

    def attempt():
        graph = tf.Graph()
        with graph.as_default():
            saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        return graph, saver

    try:
        return attempt()
    except (ValueError, TypeError, tf.errors.OpError) as exc:
        first = exc
    dropped = 0
    for node in meta.graph_def.node:
        if "_output_shapes" in node.attr:
            del node.attr["_output_shapes"]
            dropped += 1
    for function in meta.graph_def.library.function:
        for node in function.node_def:
            if "_output_shapes" in node.attr:
                del node.attr["_output_shapes"]
                dropped += 1
    if not dropped:
        raise FreezeError(f"cannot import the checkpoint's graph: {_line(first)}")
    try:
        result = attempt()
    except (ValueError, TypeError, tf.errors.OpError) as exc:
        raise FreezeError(f"cannot import the checkpoint's graph: {_line(exc)}") from None
    notes.append(f"dropped {dropped} _output_shapes attribute(s) the graph contradicts "
                 f"(import refused them: {_line(first)[:120]})")
    return result


def _line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def load_checkpoint(path, outputs):
    """(frozen GraphDef, its output names, notes) from a TF1 checkpoint.

    outputs: node or tensor names; without them a FreezeError lists the candidates.
    """
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants

    meta_path, prefix, notes = locate(path)
    meta = _read_meta(meta_path)
    if not outputs:
        candidates = candidate_outputs(meta.graph_def)
        shown = ", ".join(candidates[:12]) + (" ..." if len(candidates) > 12 else "")
        raise FreezeError(
            f"a TF1 checkpoint does not say which tensors are its outputs; name them with "
            f"--outputs NAME[,NAME]; candidates: {shown or '(none found)'}")
    graph, saver = _import(meta, notes)
    present = {n.name for n in graph.as_graph_def().node}
    missing = [o for o in outputs if graphs.node_name(o) not in present]
    if missing:
        raise FreezeError(f"--outputs: not nodes of the checkpoint's graph: {', '.join(missing)}")
    with graph.as_default(), checked_session(graph, graph.as_graph_def(), FreezeError) as session:
        if saver is None:
            if not tf.compat.v1.global_variables():
                raise FreezeError(f"the checkpoint's graph {meta_path} has no variables")
            saver = tf.compat.v1.train.Saver()
        try:
            saver.restore(session, prefix)
        except (ValueError, tf.errors.OpError) as exc:
            raise FreezeError(f"cannot restore the checkpoint {prefix}: {_line(exc)}") from None
        try:
            frozen = convert_to_constants.convert_variables_to_constants_from_session_graph(
                session, graph.as_graph_def(), sorted({graphs.node_name(o) for o in outputs}))
        except Exception as exc:  # noqa: BLE001 - TF raises many types here
            raise FreezeError(f"freezing the checkpoint failed: {_line(exc)}") from None
    for node in frozen.node:
        # Colocation with variables that are now constants, or with training ops gone.
        if "_class" in node.attr:
            del node.attr["_class"]
    return frozen, notes
