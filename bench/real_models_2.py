"""Real models, second round: data made the packages' own way, and the packages' own outputs.

    PYTHONPATH=python .venv/bin/python bench/real_models_2.py data  NAME WHEELS OUT
    PYTHONPATH=python .venv/bin/python bench/real_models_2.py check NAME WHEELS OUT RESULT_DIR...

NAME: chiron, spliceai, ethnicolr, basic_pitch, mtcnn. WHEELS: the folder the wheels were
unzipped into (one folder per wheel, named after it, as in
bench/results/2026-12-06-zen4-real_models-2.md). `data` writes OUT/data (a .npz, .npy or a
folder of one-example .npz files) and OUT/reference.npz (the package's own outputs on the
same examples, computed the package's way, not leangraph's). `check` runs each
RESULT_DIR/optimized.pb on the same examples and prints SQNR and agreement against those
outputs, on every example and on the held-out split leangraph verified on.
"""

import glob
import os
import sys
from pathlib import Path

import numpy as np


def wheel(wheels, prefix):
    found = sorted(glob.glob(f"{wheels}/{prefix}-*"))
    if not found:
        sys.exit(f"no unzipped wheel {prefix}-* in {wheels}")
    return found[-1]


# --- chiron (TF1 checkpoint, BiLSTM in while loops, fixed batch 300 x 400) -------------

CHIRON_SEG, CHIRON_JUMP, CHIRON_BATCH = 400, 130, 300


def chiron_signal(path):
    """chiron_input.read_signal(normalize=MEAN): (x - mean(unique)) / std(unique)."""
    signal = np.asarray([np.float32(v) for v in open(path).read().split()])
    uniq = np.unique(signal)
    return (signal - np.mean(uniq)) / float(np.std(uniq))


def chiron_data(wheels, out):
    """read_data_for_eval: segments of 400 every `jump`, zero-padded, with their lengths;
    the checkpoint's graph has its batch fixed at 300, so 300 segments per example."""
    root = wheel(wheels, "chiron")
    files = sorted(glob.glob(f"{root}/chiron/example_data/DNA/output/raw/*.signal"))
    events, lengths = [], []
    for path in files:
        signal = chiron_signal(path)
        for start in range(0, len(signal), CHIRON_JUMP):
            seg = signal[start:start + CHIRON_SEG]
            lengths.append(len(seg))
            events.append(np.pad(seg, (0, CHIRON_SEG - len(seg))))
    events = np.asarray(events, np.float32)
    lengths = np.asarray(lengths, np.int32)
    n = len(events) // CHIRON_BATCH
    folder = Path(out) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rows = slice(i * CHIRON_BATCH, (i + 1) * CHIRON_BATCH)
        np.savez(folder / f"batch{i:03d}.npz", Placeholder_1=events[rows],
                 Placeholder_2=lengths[rows])
    print(f"{len(files)} reads, {len(events)} segments, {n} examples of {CHIRON_BATCH}")
    ckpt = f"{root}/chiron/model/DNA_default"
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    refs = []
    with graph.as_default():
        saver = v1.train.import_meta_graph(
            glob.glob(f"{ckpt}/*.meta")[0], clear_devices=True)
        with v1.Session(graph=graph) as session:
            saver.restore(session, f"{ckpt}/final.ckpt-158301")
            for i in range(n):
                d = np.load(folder / f"batch{i:03d}.npz")
                refs.append(session.run("rnn_fnn_layer/rnn_logits_rs:0", {
                    "Placeholder:0": False, "Placeholder_1:0": d["Placeholder_1"],
                    "Placeholder_2:0": d["Placeholder_2"]}))
    np.savez(Path(out) / "reference.npz", **{f"batch{i:03d}": r for i, r in enumerate(refs)})


# --- spliceai (Keras 2 .h5, unknown length) --------------------------------------------

SPLICE_L, SPLICE_CONTEXT = 500, 10000


def one_hot_encode(seq):
    """spliceai.utils.one_hot_encode."""
    table = np.asarray([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    seq = seq.upper().replace("A", "\x01").replace("C", "\x02")
    seq = seq.replace("G", "\x03").replace("T", "\x04").replace("N", "\x00")
    return table[np.frombuffer(seq.encode(), np.int8) % 5]


def spliceai_data(wheels, out):
    """Real DNA: the basecalled nanopore reads chiron's wheel ships (E. coli-like genome
    reads, not human genes), cut into 500-base pieces and padded with 5000 N each side,
    as spliceai's README does (`'N'*(context//2) + seq + 'N'*(context//2)`)."""
    root = wheel(wheels, "chiron")
    seqs = []
    for path in sorted(glob.glob(f"{root}/chiron/example_data/DNA/output/result/*.fastq")):
        lines = open(path).read().split("\n")
        seqs += [lines[i] for i in range(1, len(lines), 4) if lines[i]]
    pieces = [s[i:i + SPLICE_L] for s in seqs for i in range(0, len(s) - SPLICE_L + 1, SPLICE_L)]
    pieces = pieces[:40]
    pad = "N" * (SPLICE_CONTEXT // 2)
    x = np.stack([one_hot_encode(pad + p + pad) for p in pieces]).astype(np.float32)
    Path(out).mkdir(parents=True, exist_ok=True)
    np.save(Path(out) / "data.npy", x)
    print(f"{len(seqs)} reads, {len(pieces)} pieces, x {x.shape}")
    import keras

    ref = {}
    for k in range(1, 6):
        model = keras.models.load_model(f"{wheel(wheels, 'spliceai')}/spliceai/models/"
                                        f"spliceai{k}.h5", compile=False)
        ref[f"spliceai{k}"] = np.concatenate(
            [model.predict(x[i:i + 1], verbose=0) for i in range(len(x))])
    np.savez(Path(out) / "reference.npz", **ref)


# --- ethnicolr (Keras 2.5 .h5, Embedding + LSTM on bigram ids) -------------------------


def find_ngrams(vocab, text, n):
    """EthnicolrModelClass.find_ngrams for an int n."""
    index = {w: i for i, w in enumerate(vocab)}  # vocab.index(w): the first match
    out = []
    for gram in zip(*[text[i:] for i in range(n)]):
        w = "".join(gram)
        out.append(vocab.index(w) if w in index else 0)
    return out


def ethnicolr_data(wheels, out):
    """pred_census_ln(year=2010): last names .str.strip().str.title(), bigram ids in the
    package's vocabulary, pad_sequences(maxlen=20) (pre-padding, pre-truncating).
    Names: the package's own input-with-header.csv and the census 2010 surnames it ships."""
    import pandas as pd

    root = f"{wheel(wheels, 'ethnicolr')}/ethnicolr"
    vocab = pd.read_csv(f"{root}/models/census/lstm/census2010_ln_vocab.csv").vocab.tolist()
    names = pd.read_csv(f"{root}/data/input-with-header.csv").last_name.dropna().tolist()
    census = pd.read_csv(f"{root}/data/census/census_2010.csv").name.dropna().tolist()
    rng = np.random.default_rng(0)
    names += [census[i] for i in rng.choice(len(census), 412, replace=False)]
    names = list(dict.fromkeys(n.strip().title() for n in names))[:400]
    ids = [find_ngrams(vocab, n, 2) for n in names]
    x = np.zeros((len(ids), 20), np.float32)
    for row, seq in enumerate(ids):
        seq = seq[-20:]
        if seq:
            x[row, 20 - len(seq):] = seq
    Path(out).mkdir(parents=True, exist_ok=True)
    np.save(Path(out) / "data.npy", x)
    (Path(out) / "names.txt").write_text("\n".join(names))
    import tf_keras

    model = tf_keras.models.load_model(f"{root}/models/census/lstm/census2010_ln_lstm.h5")
    ref = model(x.astype(np.int32), training=False).numpy()  # the package: model(X, training=False)
    np.savez(Path(out) / "reference.npz", out=ref)
    model.save(Path(out) / "savedmodel")  # the SavedModel leangraph is given
    print(f"{len(names)} names, x {x.shape}, races "
          f"{pd.read_csv(f'{root}/models/census/lstm/census2010_race.csv').race.tolist()}")


# --- basic-pitch (TF2 SavedModel, three sigmoid outputs) -------------------------------

BP_SR, BP_HOP, BP_N = 22050, 256, 22050 * 2 - 256


def synthetic_music(seconds, rng):
    """Seeded stand-in music at 22.05 kHz: plucked harmonic notes (two voices) over a
    bass line, with noise hits; no real music is on this machine."""
    t_total = int(seconds * BP_SR)
    y = np.zeros(t_total, np.float64)
    pos = 0
    while pos < t_total:
        dur = int(rng.uniform(0.15, 0.6) * BP_SR)
        for voice in range(2):
            midi = rng.integers(48, 84) if voice == 0 else rng.integers(36, 55)
            f0 = 440 * 2 ** ((midi - 69) / 12)
            t = np.arange(min(dur, t_total - pos)) / BP_SR
            env = np.exp(-t * rng.uniform(2, 8))
            note = sum(np.sin(2 * np.pi * f0 * h * t) / h ** 1.5 for h in range(1, 7))
            y[pos:pos + len(t)] += 0.15 * env * note
        if rng.random() < 0.3:
            n = min(2000, t_total - pos)
            y[pos:pos + n] += 0.05 * rng.normal(size=n) * np.exp(-np.arange(n) / 300)
        pos += dur
    return y.astype(np.float32)


def basic_pitch_data(wheels, out):
    """inference.get_audio_input: mono at 22050 Hz, overlap 30 frames (7680 samples, half
    of it zero-padded in front), windows of 43844 samples every 36164, zero-padded at
    the end, shape (n, 43844, 1). Content: 4 x 40 s of seeded stand-in music and
    CPython's test recording pluck-pcm32.wav (resampled with scipy, as librosa.load
    would resample it)."""
    import wave

    from scipy.signal import resample_poly

    rng = np.random.default_rng(0)
    clips = [synthetic_music(40, rng) for _ in range(4)]
    pluck = glob.glob("/root/.pyenv/versions/3.1*/lib/python3.1*/test/audiodata/pluck-pcm32.wav")
    if pluck:
        with wave.open(pluck[0]) as w:
            raw = np.frombuffer(w.readframes(w.getnframes()), "<i4").reshape(-1, w.getnchannels())
            clips.append(resample_poly(raw.mean(1) / 2 ** 31, BP_SR, w.getframerate())
                         .astype(np.float32))
    overlap = 30 * BP_HOP
    hop = BP_N - overlap
    windows = []
    for audio in clips:
        audio = np.concatenate([np.zeros(overlap // 2, np.float32), audio])
        for i in range(0, len(audio), hop):
            w = audio[i:i + BP_N]
            windows.append(np.pad(w, (0, BP_N - len(w))))
    x = np.asarray(windows, np.float32)[..., None]
    Path(out).mkdir(parents=True, exist_ok=True)
    np.save(Path(out) / "data.npy", x)
    import tensorflow as tf

    model = tf.saved_model.load(f"{wheel(wheels, 'basic_pitch')}/basic_pitch/saved_models/"
                                "icassp_2022/nmp")
    outs = [{k: v.numpy() for k, v in model(x[i:i + 1]).items()} for i in range(len(x))]
    np.savez(Path(out) / "reference.npz",
             **{k: np.concatenate([o[k] for o in outs]) for k in outs[0]})
    print(f"{len(clips)} clips, x {x.shape}, outputs "
          f"{ {k: v.shape for k, v in outs[0].items()} }")


# --- mtcnn 1.0.0 (Keras 3 subclassed models, weights in joblib/lz4) -------------------


def mtcnn_data(wheels, out):
    """MTCNN().detect_faces on real photographs, one at a time, recording what the package
    feeds PNet (its image pyramid: (x - 127.5) / 128, AREA-resized, one size per scale)
    and ONet (48x48 patches of RNet's boxes) and what they return. Needs joblib and lz4
    on sys.path (pip install --target EXTRA joblib lz4; EXTRA in $MTCNN_EXTRA).
    Photographs: scikit-image's astronaut/chelsea/coffee (from its wheel, unzipped into
    WHEELS/skimage) and scikit-learn's china/flower."""
    sys.path[:0] = [wheel(wheels, "mtcnn"), os.environ.get("MTCNN_EXTRA", "/tmp/rm2/extra")]
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from mtcnn import MTCNN

    images = [np.asarray(Image.open(f"{wheels}/skimage/skimage/data/{n}.png").convert("RGB"))
              for n in ("astronaut", "chelsea", "coffee")]
    images += list(load_sample_images().images)
    detector = MTCNN()
    record = {"pnet": [], "onet": []}
    models = {}
    for stage, key in ((detector.stages[0], "pnet"), (detector.stages[2], "onet")):
        models[key] = stage._model

        def recorder(x, *args, _model=stage._model, _key=key, **kwargs):
            outs = _model(x, *args, **kwargs)
            record[_key].append((np.asarray(x), [np.asarray(o) for o in outs]))
            return outs

        stage._model = recorder
    # looser thresholds than the defaults (0.6, 0.7, 0.8), so that ONet sees more patches
    faces = [detector.detect_faces(image, threshold_pnet=0.5, threshold_rnet=0.2)
             for image in images]
    print("faces per image:", [len(f) for f in faces],
          "confidences:", [[round(d["confidence"], 3) for d in f] for f in faces])
    folder = Path(out) / "pnet_data"
    folder.mkdir(parents=True, exist_ok=True)
    pref = {}
    for i, (x, outs) in enumerate(record["pnet"]):
        for j in range(len(x)):
            np.save(folder / f"scale{i:02d}_{j}.npy", x[j:j + 1])
            pref[f"scale{i:02d}_{j}"] = np.concatenate([o[j:j + 1].reshape(-1)
                                                          for o in outs])
    np.savez(Path(out) / "pnet_reference.npz", **pref)
    onet_x = np.concatenate([x for x, _ in record["onet"]])
    np.save(Path(out) / "onet_data.npy", onet_x)
    np.savez(Path(out) / "onet_reference.npz",
             **{f"out{k}": np.concatenate([outs[k] for _, outs in record["onet"]])
                for k in range(3)})
    for key, model in models.items():
        model.save(Path(out) / f"{key}.keras")
    print(f"pnet: {len(pref)} pyramid images, e.g. {record['pnet'][0][0].shape}; onet: "
          f"{onet_x.shape}")


# --- checking ----------------------------------------------------------------------------


def run_pb(path, feeds_list, fetch):
    """The written graph in a plain TF1 session, as bench/real_model_check.py runs it, once
    per feeds (imported here: the `data` step runs where leangraph may not be installed)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_model_check import run_pb as run_one

    return [run_one(path, feeds, fetch) for feeds in feeds_list]


def sqnr(ref, got):
    from leangraph.metrics import sqnr_db

    return sqnr_db(ref, got)


def report(name, ref, got, held, agree):
    sel = lambda a: np.concatenate([a[i] for i in held])  # noqa: E731
    print(f"{name}: all {len(ref)}: SQNR {sqnr(np.concatenate(ref), np.concatenate(got)):.1f} dB,"
          f" agreement {100 * agree(np.concatenate(ref), np.concatenate(got)):.2f} %; held-out "
          f"{len(held)}: SQNR {sqnr(sel(ref), sel(got)):.1f} dB, agreement "
          f"{100 * agree(sel(ref), sel(got)):.2f} %", flush=True)


def top1(a, b):
    return (a.argmax(-1) == b.argmax(-1)).mean()


def thresholded(a, b):
    return ((a > 0.5) == (b > 0.5)).mean()


def check(name, wheels, out, results):
    import json

    from leangraph.pipeline.data import split

    for result in results:
        ends = json.load(open(f"{result}/report.json"))["settings"]
        outputs = [o["name"] for o in ends["outputs"]]
        kinds = ends.get("output_kinds", {})
        if name == "chiron":
            files = sorted(glob.glob(f"{out}/data/*.npz"))
            feeds = [{"Placeholder_1:0": np.load(f)["Placeholder_1"],
                      "Placeholder_2:0": np.load(f)["Placeholder_2"]} for f in files]
            refs = {outputs[0]: [np.load(f"{out}/reference.npz")[Path(f).stem] for f in files]}
        elif name == "mtcnn" and "pnet" in str(result):
            files = sorted(glob.glob(f"{out}/pnet_data/*.npy"))
            feeds = [{f"{ends['inputs'][0]['name']}:0": np.load(f)} for f in files]
            reference = np.load(f"{out}/pnet_reference.npz")
            refs = {"all": [reference[Path(f).stem] for f in files]}
        else:
            prefix = "onet_" if name == "mtcnn" else ""
            x = np.load(f"{out}/{prefix}data.npy")
            inp = ends["inputs"][0]["name"]
            feeds = [{f"{inp}:0": x[i:i + 1]} for i in range(len(x))]
            reference = np.load(f"{out}/{prefix}reference.npz")
            if name == "mtcnn":
                refs = {o: list(reference[f"out{j}"]) for j, o in enumerate(outputs)}
            # one output: the reference of this model (spliceaiK from the result's name)
            keys = {o: o if o in reference.files else
                    next((k for k in reference.files if k in str(result)), reference.files[0])
                    for o in outputs}
            refs = refs if name == "mtcnn" else {o: list(reference[keys[o]]) for o in outputs}
        got = run_pb(f"{result}/optimized.pb", feeds, [f"{o}:0" for o in outputs])
        held = split(len(feeds)).verification
        if "all" in refs:  # PNet: both outputs of each pyramid image, flattened as recorded
            flat = [np.concatenate([g.reshape(-1) for g in r]) for r in got]
            report(f"{name} {result} (both outputs)", refs["all"], flat, held,
                   lambda a, b: float("nan"))
            continue
        for j, o in enumerate(outputs):
            g = [r[j] if name == "chiron" else r[j][0] for r in got]
            agree = thresholded if kinds.get(o) in ("binary", "multilabel") else top1
            report(f"{name} {result} {o} ({kinds.get(o)})", refs[o], g, held, agree)


if __name__ == "__main__":
    cmd, name, wheels, out, *rest = sys.argv[1:]
    if cmd == "data":
        {"chiron": chiron_data, "spliceai": spliceai_data, "ethnicolr": ethnicolr_data,
         "basic_pitch": basic_pitch_data, "mtcnn": mtcnn_data}[name](
            wheels, out)
    else:
        check(name, wheels, out, rest)
