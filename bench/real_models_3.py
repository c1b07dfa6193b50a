"""Real models, third round: weights-only Keras .h5 files whose model the package builds in
code, with data made the packages' own way and the packages' own outputs.

    PYTHONPATH=python .venv/bin/python bench/real_models_3.py data  NAME WHEELS OUT
    PYTHONPATH=python .venv/bin/python bench/real_models_3.py check NAME WHEELS OUT RESULT_DIR...

NAME: deepcut, mhcnuggets, textgenrnn, chars2vec, chars2vec_tf_keras. WHEELS: the folder the
wheels and sdists were unpacked into (bench/results/2026-12-06-zen4-real_models-3.md says how).
`data` builds the model with the package's own builder and loads the package's weights-only .h5
into it (the package's way), then writes OUT/data.npz (arrays named after the model's inputs),
OUT/reference.npz (the package's own outputs on the same examples, computed the package's way)
and the built model saved as a user would (OUT/model.keras, and OUT/model.h5 where Keras can
write it). `api NAME WHEELS OUT RESULT_DIR` builds the model and gives the object itself to
leangraph.optimize (the route for textgenrnn, whose custom layer no saved file can carry).
`check` runs RESULT_DIR/optimized.pb on every example and prints SQNR, max difference and
agreement against the reference, on every example and on the held-out split leangraph verified
on.
"""

import glob
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np


def root(wheels, name):
    found = sorted(glob.glob(f"{wheels}/{name}*"))
    if not found:
        sys.exit(f"no unpacked package {name}* in {wheels}")
    return found[-1]


def module(path, name):
    """A package's module from its file, without running the package's __init__ (which
    imports its heavy or Keras-2-only dependencies)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def input_names(model):
    """The model's input layer names: what leangraph names the frozen graph's inputs."""
    names = getattr(model, "input_names", None)
    return list(names) if names else [t._keras_history[0].name for t in model.inputs]


def save(out, model, x, ref):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "data.npz", **x)
    np.savez(out / "reference.npz", **ref)
    model.save(out / "model.keras")
    model.save(out / "model.h5")
    print({k: v.shape for k, v in x.items()}, "->", {k: v.shape for k, v in ref.items()})


# --- deepcut 0.7 (Thai word segmentation: 2-input CNN, weights-only Keras 2.0.2 .h5) ----


def thai_sentences(wheels, count=60, seed=0):
    """Real Thai words, from the dictionary SEFR_CUT's wheel ships (variable/
    words_modified.txt), joined without spaces as Thai is written: each sentence is 4-9
    seeded words. Returns the sentences and their true word boundaries."""
    words = [w.strip() for w in open(f"{root(wheels, 'SEFR_CUT')}/sefr_cut/variable/"
                                     "words_modified.txt", encoding="utf-8") if w.strip()]
    words = [w for w in words if w.isalpha() and 1 < len(w) < 12]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        out.append([words[i] for i in rng.choice(len(words), rng.integers(4, 10))])
    return out


def deepcut_data(wheels, out):
    """deepcut.tokenize: create_feature_array(text, n_pad=21) gives, per character, the
    ids of it and of its 10 neighbours each side (x_char) and their character types
    (x_type); the model says whether each character starts a word (sigmoid > 0.5)."""
    base = f"{root(wheels, 'deepcut')}/deepcut"
    builder = module(f"{base}/model.py", "deepcut_model")
    utils = module(f"{base}/utils.py", "deepcut_utils")
    model = builder.get_convo_nn2()
    model.load_weights(f"{base}/weight/cnn_without_ne_ab.h5")
    sentences = thai_sentences(wheels)
    chars, types, truth = [], [], []
    for words in sentences:
        c, t = utils.create_feature_array("".join(words), n_pad=21)
        chars.append(c)
        types.append(t)
        starts = np.zeros(len(c), bool)
        starts[np.cumsum([0] + [len(w) for w in words[:-1]])] = True
        truth.append(starts)
    x_char, x_type = np.concatenate(chars), np.concatenate(types)
    pred = model.predict([x_char, x_type], verbose=0)  # deepcut.tokenize's call
    truth = np.concatenate(truth)
    print(f"{len(sentences)} sentences, {len(x_char)} characters; the package's word starts "
          f"against the true ones: {100 * ((pred.ravel() > 0.5) == truth).mean():.2f} %")
    names = input_names(model)
    save(out, model, {names[0]: x_char.astype(np.float32), names[1]: x_type.astype(np.float32)},
         {"out": pred})
    return model


# --- mhcnuggets 2.4.1 (peptide-MHC binding: Masking + LSTM, weights-only Keras 2.2 .h5) -


MHC_ALLELE = "HLA-A02:01"


def mhcnuggets_data(wheels, out):
    """predict.predict(class_='I', mhc='HLA-A02:01'): mask_peptides(max_len=15, pad 'Z' at
    the end), tensorize_keras(embed_type='softhot') (the pad is -4200000 in all 21, the
    Masking layer's value), mhcnuggets_lstm((15, 21)), load_weights of the allele's
    BA_to_HLAp model, model.predict. Peptides: the package's test peptides and 400
    measured HLA-A*02:01 peptides of its curated training data (seeded)."""
    base = root(wheels, "mhcnuggets")
    sys.path.insert(0, base)
    from mhcnuggets.src.dataset import mask_peptides, tensorize_keras
    from mhcnuggets.src.models import mhcnuggets_lstm

    import pandas as pd

    peptides = open(f"{base}/mhcnuggets/data/test/test_peptides.peps").read().split()
    data = pd.read_csv(f"{base}/mhcnuggets/data/production/mhcI/curated_training_data.csv")
    column = "allele" if "allele" in data else data.columns[0]
    pool = data[data[column].astype(str).str.replace("*", "", regex=False) == MHC_ALLELE]
    pool = sorted(set(p for p in pool.peptide.astype(str) if p.isalpha() and len(p) <= 15))
    rng = np.random.default_rng(0)
    peptides += [pool[i] for i in rng.choice(len(pool), 400, replace=False)]
    normed, _ = mask_peptides(peptides, max_len=15)
    x = np.asarray(tensorize_keras(normed, embed_type="softhot"), np.float32)
    model = mhcnuggets_lstm((15, 21))
    model.load_weights(f"{base}/mhcnuggets/saves/production/{MHC_ALLELE}_BA_to_HLAp.h5")
    pred = model.predict(x, verbose=0)
    print(f"{len(peptides)} peptides of {len(pool)} for {MHC_ALLELE}, lengths "
          f"{sorted(set(map(len, peptides)))}; binders (>= 1 - log_50000(500)): "
          f"{int((pred >= 1 - np.log(500) / np.log(50000)).sum())}")
    save(out, model, {input_names(model)[0]: x}, {"out": pred})
    (Path(out) / "peptides.txt").write_text("\n".join(peptides))
    return model


# --- textgenrnn 2.0.0 (char LSTM + custom AttentionWeightedAverage, weights-only .h5) ----


def textgenrnn_builder(base):
    """The package's model.py and AttentionWeightedAverage.py, run on tf_keras (tf.keras 2,
    which the package was written for: its K.dot/K.max and Adam(lr=...) are not in
    Keras 3)."""
    source = {}
    for name in ("AttentionWeightedAverage", "model"):
        text = Path(f"{base}/textgenrnn/{name}.py").read_text()
        text = text.replace("tensorflow.keras", "tf_keras").replace(
            "from .AttentionWeightedAverage import", "from textgenrnn_awa import")
        source[name] = text
    awa = type(sys)("textgenrnn_awa")
    exec(compile(source["AttentionWeightedAverage"], "AttentionWeightedAverage.py", "exec"),
         awa.__dict__)
    sys.modules["textgenrnn_awa"] = awa
    builder = type(sys)("textgenrnn_model")
    exec(compile(source["model"], "model.py", "exec"), builder.__dict__)
    return builder, awa.AttentionWeightedAverage


def english_text():
    """Real English prose: Debian's GPL-3 text, paragraphs of at least 200 characters."""
    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    return [" ".join(p.split()) for p in text.split("\n\n") if len(" ".join(p.split())) > 200]


def textgenrnn_data(wheels, out):
    """textgenrnn.generate's step: the text so far as char ids (Tokenizer(char_level=True,
    filters='', lower=False) with the package's vocab, unknown chars dropped), last 40,
    pre-padded with 0 (pad_sequences(maxlen=40)); the model gives the next char's softmax.
    Prefixes: 300 seeded cut points in real English paragraphs."""
    base = root(wheels, "textgenrnn")
    builder, _ = textgenrnn_builder(base)
    vocab = json.load(open(f"{base}/textgenrnn/textgenrnn_vocab.json", encoding="utf-8"))
    model = builder.textgenrnn_model(len(vocab) + 1, cfg={
        "rnn_layers": 2, "rnn_size": 128, "rnn_bidirectional": False, "max_length": 40,
        "max_words": 10000, "dim_embeddings": 100, "word_level": False,
        "single_text": False}, weights_path=f"{base}/textgenrnn/textgenrnn_weights.hdf5",
        optimizer="adam")
    rng = np.random.default_rng(0)
    paragraphs = english_text()
    x = np.zeros((300, 40), np.float32)
    for row in range(300):
        p = paragraphs[rng.integers(len(paragraphs))]
        ids = [vocab[c] for c in p[:rng.integers(5, len(p))] if c in vocab][-40:]
        x[row, 40 - len(ids):] = ids
    pred = model.predict(x, verbose=0)
    save(out, model, {"input": x}, {"out": pred})
    return model


# --- chars2vec 0.1.7 (word embeddings: 2 LSTMs over one-hot chars, weights-only .h5) ----


def chars2vec_data(wheels, out, dim=50):
    """chars2vec.load_model('eng_50').vectorize_words(words): each word lower-cased, one-hot
    over the package's 59 chars (unknown chars all zero), pre-padded with zeros to the
    longest word (pad_sequences), embedding_model.predict. Words: 300 distinct words of
    real English prose (Debian's GPL-3), seeded."""
    base = f"{root(wheels, 'chars2vec')}/chars2vec"
    c2v = module(f"{base}/model.py", "chars2vec_model").load_model(
        f"{base}/trained_models/eng_{dim}")
    words = sorted(set(w.strip(".,;:()\"'") for p in english_text() for w in p.split()))
    words = [w for w in words if w]
    rng = np.random.default_rng(0)
    words = [words[i] for i in rng.choice(len(words), 300, replace=False)]
    vectors = c2v.vectorize_words(words)  # the package's own path, for the reference
    n = max(len(w) for w in words)
    x = np.zeros((len(words), n, c2v.vocab_size), np.float32)
    for row, word in enumerate(words):
        for col, ch in enumerate(word.lower()):
            if ch in c2v.char_to_ix:
                x[row, n - len(word) + col, c2v.char_to_ix[ch]] = 1
    model = c2v.embedding_model
    direct = model.predict(x, verbose=0)
    print(f"{len(words)} words, longest {n}; vectorize_words against the stacked input: "
          f"max |diff| {np.abs(direct - vectors).max():.2e}")
    save(out, model, {input_names(model)[0]: x}, {"out": vectors})
    (Path(out) / "words.txt").write_text("\n".join(words))
    return model


def chars2vec_tf_keras_data(wheels, out, dim=50):
    """The same chars2vec network built with tf_keras (tf.keras 2, closer to the Keras 2.2
    that wrote the weights) and saved as the .keras archive tf.keras 2 writes: the route a
    TF 2.x-era package's user takes. Data and reference: chars2vec's (run that first, into
    the folder beside OUT named chars2vec)."""
    import pickle

    import tf_keras

    base = f"{root(wheels, 'chars2vec')}/chars2vec/trained_models/eng_{dim}"
    emb_dim, char_to_ix = pickle.load(open(f"{base}/model.pkl", "rb"))
    inp = tf_keras.layers.Input(shape=(None, len(char_to_ix)))
    x = tf_keras.layers.LSTM(emb_dim, return_sequences=True)(inp)
    model = tf_keras.models.Model(inp, tf_keras.layers.LSTM(emb_dim)(x))
    model.load_weights(f"{base}/weights.h5")
    src = Path(out).parent / "chars2vec"
    x = np.load(src / "data.npz")
    x = {input_names(model)[0]: x[x.files[0]]}
    pred = model.predict(next(iter(x.values())), verbose=0)
    ref = np.load(src / "reference.npz")["out"]
    print(f"tf_keras against the package (Keras 3): max |diff| {np.abs(pred - ref).max():.2e}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "data.npz", **x)
    np.savez(out / "reference.npz", out=ref)
    model.save(out / "model.keras")
    return model


# --- checking ----------------------------------------------------------------------------


def run_pb(path, feeds_list, fetch):
    """The written graph in one plain TF1 session, run once per feeds."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(path).read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return [session.run(fetch, feeds) for feeds in feeds_list]


def check(name, wheels, out, results):
    from leangraph.metrics import sqnr_db
    from leangraph.pipeline.data import split

    data = np.load(f"{out}/data.npz")
    ref = np.load(f"{out}/reference.npz")["out"]
    n = len(ref)
    held = split(n).verification
    for result in results:
        settings = json.load(open(f"{result}/report.json"))["settings"]
        inputs = [i["name"] for i in settings["inputs"]]
        outputs = [o["name"] for o in settings["outputs"]]
        kind = settings.get("output_kinds", {}).get(outputs[0])
        keys = data.files if len(data.files) == 1 else inputs
        got = np.concatenate(run_pb(f"{result}/optimized.pb", [
            {f"{i}:0": data[k][j:j + 1] for i, k in zip(inputs, keys)} for j in range(n)],
            f"{outputs[0]}:0"))
        if kind in ("binary", "multilabel"):
            agree = lambda a, b: ((a > 0.5) == (b > 0.5)).mean()  # noqa: E731
        else:
            agree = lambda a, b: (a.argmax(-1) == b.argmax(-1)).mean()  # noqa: E731
        for label, rows in (("all", np.arange(n)), ("held-out", np.asarray(held))):
            r, g = ref[rows], got[rows]
            print(f"{name} {result} {outputs[0]} ({kind}): {label} {len(rows)}: SQNR "
                  f"{sqnr_db(r, g):.1f} dB, max |diff| {np.abs(r - g).max():.2e}, agreement "
                  f"{100 * agree(r, g):.2f} %", flush=True)


def api(name, wheels, out, outdir):
    """leangraph.optimize on the model object the package builds (no file in between)."""
    import leangraph

    model = BUILDERS[name](wheels, out)
    x = dict(np.load(f"{out}/data.npz"))
    path = Path(out) / "api_data.npz"
    np.savez(path, **x)
    report = leangraph.optimize(model, outdir=outdir, data=str(path), runs=5)
    print("result:", getattr(report, "result", report))


BUILDERS = {"deepcut": deepcut_data, "mhcnuggets": mhcnuggets_data,
            "textgenrnn": textgenrnn_data, "chars2vec": chars2vec_data,
            "chars2vec_tf_keras": chars2vec_tf_keras_data}

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cmd, name, wheels, out, *rest = sys.argv[1:]
    if cmd == "data":
        BUILDERS[name](wheels, out)
    elif cmd == "api":
        api(name, wheels, out, rest[0])
    else:
        check(name, wheels, out, rest)
