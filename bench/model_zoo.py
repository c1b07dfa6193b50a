"""Five small trained Keras 3 models through `leangraph optimize --data`: a text transformer, an
LSTM, a U-Net, a Conv1D audio classifier and a two-input/two-output model. Each is trained for a
few seconds on data with real structure (scikit-learn's bundled digits, or generated: a small
grammar with negation, shapes to segment, tone and noise waveforms), saved as .keras with its
--data .npz (arrays named after the inputs, labels as y / y_<output>), then optimized; the table
gives the result, int8's status and reason, and every output's kind and gates.

    PYTHONPATH=python .venv/bin/python bench/model_zoo.py [--models transformer,unet]
        [--examples 160] [--runs 5] [--small] [--out leangraph-zoo] [--json]
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

MODELS = ("transformer", "lstm", "unet", "conv1d_audio", "two_heads")

# ---------------------------------------------------------------------------
# data with real structure
# ---------------------------------------------------------------------------

PAD, NOT, VERY = 0, 1, 2
POSITIVE = range(3, 13)
NEGATIVE = range(13, 23)
VOCAB = 100  # 23..99: filler words


def sentences(rng, n, length):
    """Token ids of a small grammar: filler words, at most one sentiment word, which a
    'not' just before it flips (and 'very' may stand between them). Classes: 0 neutral,
    1 positive, 2 negative. Sentences are padded with 0 to `length`."""
    tokens = np.zeros((n, length), np.int32)
    labels = np.zeros(n, np.int64)
    for i in range(n):
        words = list(rng.integers(23, VOCAB, rng.integers(length // 2, length - 2)))
        kind = rng.integers(3)
        if kind:
            good = kind == 1
            phrase = [int(rng.choice(POSITIVE if good else NEGATIVE))]
            if rng.random() < 0.3:
                phrase.insert(0, VERY)
            negated = rng.random() < 0.4
            if negated:
                phrase.insert(0, NOT)
                good = not good
            elif rng.random() < 0.3:  # a 'not' elsewhere changes nothing
                words.insert(int(rng.integers(len(words) + 1)), NOT)
            at = int(rng.integers(len(words) + 1))
            words[at:at] = phrase
            labels[i] = 1 if good else 2
        words = words[:length]
        tokens[i, :len(words)] = words
    return tokens, labels


def digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


def shapes(rng, n, side):
    """Images of a disc and a square on noise; masks 0 background, 1 disc, 2 square."""
    images = rng.normal(0.0, 0.15, (n, side, side, 1)).astype(np.float32)
    masks = np.zeros((n, side, side), np.int64)
    yy, xx = np.mgrid[:side, :side]
    for i in range(n):
        for label in rng.permutation([1, 2]):
            r = rng.uniform(side / 8, side / 4)
            cy, cx = rng.uniform(r, side - r, 2)
            if label == 1:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:
                inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            masks[i][inside] = label
            images[i, inside, 0] += rng.uniform(0.6, 1.2)
    return images, masks


def waveforms(rng, n, samples, rate=8000):
    """Half a second or less of sine, square, sawtooth or noise bursts at random pitch,
    level and phase, in background noise; classes in that order."""
    t = np.arange(samples) / rate
    x = np.zeros((n, samples, 1), np.float32)
    y = rng.integers(0, 4, n)
    for i in range(n):
        f = rng.uniform(200, 1200)
        phase = rng.uniform(0, 2 * np.pi)
        a = rng.uniform(0.2, 1.0)
        cycle = (f * t + phase / (2 * np.pi)) % 1.0
        wave = [np.sin(2 * np.pi * cycle), np.sign(np.sin(2 * np.pi * cycle)),
                2 * cycle - 1, rng.normal(0, 0.6, samples)][y[i]]
        envelope = np.clip(np.minimum(t, t[-1] - t) * 40, 0, 1)
        x[i, :, 0] = a * wave * envelope + rng.normal(0, 0.05, samples)
    return x, y.astype(np.int64)


# ---------------------------------------------------------------------------
# the models: each returns (model, train inputs, train labels, data inputs, data labels),
# labels keyed by the Keras output's name
# ---------------------------------------------------------------------------

def transformer(rng, n, small):
    import keras
    from keras import layers, ops

    length, width = (16, 16) if small else (24, 32)
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    positions = ops.cumsum(ops.ones_like(tokens), axis=1) - 1
    h = layers.Embedding(VOCAB, width)(tokens) + layers.Embedding(length, width)(positions)
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=width // 2)(h, h)
    h = layers.LayerNormalization()(h + attended)
    ff = layers.Dense(width, activation="relu")(layers.Dense(2 * width, activation="relu")(h))
    h = layers.LayerNormalization()(h + ff)
    h = layers.GlobalAveragePooling1D()(h)
    out = layers.Dense(3, activation="softmax", name="sentiment")(h)
    model = keras.Model(tokens, out)
    x, y = sentences(rng, 3000 + n, length)
    return model, {"tokens": x[n:]}, {"sentiment": y[n:]}, {"tokens": x[:n]}, {"sentiment": y[:n]}


def lstm(rng, n, small):
    import keras
    from keras import layers

    rows = keras.Input((8, 8), name="rows")  # a digit read row by row
    h = layers.LSTM(16 if small else 32)(rows)
    out = layers.Dense(10, activation="softmax", name="digit")(h)
    model = keras.Model(rows, out)
    x, y = digits()
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    return model, {"rows": x[n:]}, {"digit": y[n:]}, {"rows": x[:n]}, {"digit": y[:n]}


def unet(rng, n, small):
    import keras
    from keras import layers

    side, width = (16, 8) if small else (32, 12)
    image = keras.Input((side, side, 1), name="image")
    c1 = layers.Conv2D(width, 3, padding="same", activation="relu")(image)
    c1 = layers.Conv2D(width, 3, padding="same", activation="relu")(c1)
    c2 = layers.Conv2D(2 * width, 3, padding="same", activation="relu")(layers.MaxPooling2D()(c1))
    c3 = layers.Conv2D(4 * width, 3, padding="same", activation="relu")(layers.MaxPooling2D()(c2))
    u2 = layers.Conv2DTranspose(2 * width, 2, strides=2, padding="same")(c3)
    d2 = layers.Conv2D(2 * width, 3, padding="same", activation="relu")(
        layers.Concatenate()([u2, c2]))
    u1 = layers.Conv2DTranspose(width, 2, strides=2, padding="same")(d2)
    d1 = layers.Conv2D(width, 3, padding="same", activation="relu")(
        layers.Concatenate()([u1, c1]))
    out = layers.Conv2D(3, 1, activation="softmax", name="mask")(d1)
    model = keras.Model(image, out)
    x, y = shapes(rng, (600 if small else 1200) + n, side)
    return model, {"image": x[n:]}, {"mask": y[n:]}, {"image": x[:n]}, {"mask": y[:n]}


def conv1d_audio(rng, n, small):
    import keras
    from keras import layers

    samples = 512 if small else 1024
    wave = keras.Input((samples, 1), name="waveform")
    h = layers.Conv1D(16, 9, strides=2, activation="relu")(wave)
    h = layers.MaxPooling1D(2)(h)
    h = layers.Conv1D(24, 5, activation="relu")(h)
    h = layers.MaxPooling1D(2)(h)
    h = layers.Conv1D(32, 3, activation="relu")(h)
    h = layers.GlobalAveragePooling1D()(h)
    out = layers.Dense(4, activation="softmax", name="sound")(h)
    model = keras.Model(wave, out)
    x, y = waveforms(rng, 1200 + n, samples)
    return model, {"waveform": x[n:]}, {"sound": y[n:]}, {"waveform": x[:n]}, {"sound": y[:n]}


def two_heads(rng, n, small):
    """A digit shown at a random contrast and offset (given as a second input): its class
    (softmax) and its ink, the mean of the clean image (regression)."""
    import keras
    from keras import layers

    image = keras.Input((8, 8, 1), name="image")
    scale = keras.Input((2,), name="scale")
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(image)
    h = layers.Conv2D(24, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Flatten()(h)
    h = layers.Concatenate()([h, layers.Dense(8, activation="relu")(scale)])
    h = layers.Dense(48, activation="relu")(h)
    digit = layers.Dense(10, activation="softmax", name="digit")(h)
    ink = layers.Dense(1, name="ink")(h)
    model = keras.Model([image, scale], [digit, ink])
    x, y = digits()
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    contrast = rng.uniform(0.5, 4.0, len(x)).astype(np.float32)
    offset = rng.uniform(-1.0, 1.0, len(x)).astype(np.float32)
    shown = x[..., None] * contrast[:, None, None, None] + offset[:, None, None, None]
    ink_of = x.reshape(len(x), -1).mean(1, keepdims=True).astype(np.float32)
    inputs = {"image": shown, "scale": np.stack([contrast, offset], 1)}
    labels = {"digit": y, "ink": ink_of}
    part = lambda d, s: {k: v[s] for k, v in d.items()}  # noqa: E731
    return (model, part(inputs, slice(n, None)), part(labels, slice(n, None)),
            part(inputs, slice(None, n)), part(labels, slice(None, n)))


BUILDERS = {"transformer": transformer, "lstm": lstm, "unet": unet,
            "conv1d_audio": conv1d_audio, "two_heads": two_heads}

LOSSES = {"regression": "mse", "classes": "sparse_categorical_crossentropy"}


def build(name, folder, examples=160, small=False, seconds=10.0, seed=0, epochs=None):
    """Builds, trains (`epochs` epochs, or as many as fit in about `seconds`, 2 to 60) and
    saves zoo model `name` into folder:
    NAME.keras and NAME.npz (arrays named after the inputs, labels y_<output>, with the
    frozen graph's output names). Returns (model path, data path, held-out scores)."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model, x_train, y_train, x_data, y_data = BUILDERS[name](rng, examples, small)
    names = model.output_names
    losses = {k: "mse" if y_train[k].dtype.kind == "f" else "sparse_categorical_crossentropy"
              for k in names}
    metrics = {k: "mae" if losses[k] == "mse" else "accuracy" for k in names}
    if len(names) == 1:  # Keras takes a one-output model's labels, loss, metric bare
        losses, metrics = losses[names[0]], [metrics[names[0]]]
        y_fit, y_eval = y_train[names[0]], y_data[names[0]]
    else:
        y_fit, y_eval = y_train, y_data
    x_fit = x_train if len(x_train) > 1 else next(iter(x_train.values()))
    x_eval = x_data if len(x_data) > 1 else next(iter(x_data.values()))
    model.compile(keras.optimizers.Adam(3e-3), loss=losses, metrics=metrics)
    started = time.monotonic()
    done = 0
    while (done < epochs if epochs else
           done < 60 and (done < 2 or time.monotonic() - started < seconds)):
        model.fit(x_fit, y_fit, batch_size=64, epochs=1, verbose=0)
        done += 1
    scores = model.evaluate(x_eval, y_eval, verbose=0, return_dict=True)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / f"{name}.keras"
    model.save(model_path)

    from leangraph.freeze import freeze

    frozen = [o.name for o in freeze(str(model_path)).outputs]
    data = dict(x_data)
    for keras_name, label in y_data.items():
        graph_name = next((g for g in frozen if g.split(":")[0].split("/")[0] == keras_name),
                          None)
        data[f"y_{graph_name}" if graph_name else "y"] = label
    data_path = folder / f"{name}.npz"
    np.savez(data_path, **data)
    return model_path, data_path, {"epochs": done, **{k: float(v) for k, v in scores.items()}}


# ---------------------------------------------------------------------------
# optimize and the table
# ---------------------------------------------------------------------------

def command(model_path, data_path, out, runs):
    return [sys.executable, "-m", "leangraph", "optimize", str(model_path), "--data",
            str(data_path), "-o", str(out), "--runs", str(runs), "--no-progress"]


def summary(name, report, trained):
    int8 = next((v for v in report["variants"] if v["name"] == "int8"), None)
    outputs = {}
    for variant in report["variants"]:
        for check in (variant.get("verification") or {}).get("outputs", []):
            row = outputs.setdefault(check["name"], {"kind": check.get("kind"), "gates": {}})
            row["gates"].setdefault(variant["name"], []).append(
                {k: check.get(k) for k in ("gate", "threshold", "value", "passed")})
    return {"model": name, "trained": trained, "result": report.get("result"),
            "int8": None if int8 is None else {
                "status": int8.get("status"), "reason": int8.get("reason"),
                "mac_share": (int8.get("quantization") or {}).get("int8_mac_share"),
                "kept_fp32": [f"{l['name']} ({l['reason']})" for l in
                              (int8.get("quantization") or {}).get("layers", [])
                              if l["precision"] != "int8"]},
            "kinds": report.get("settings", {}).get("output_kinds"),
            "verification": report.get("verification"), "outputs": outputs}


def _number(value):
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(rows):
    lines = ["| model | trained (held-out) | result | int8 | output | kind | gates (variant: gate "
             "value / threshold, pass) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        trained = ", ".join(f"{k} {_number(v)}" for k, v in row["trained"].items()
                            if k != "loss" and not k.endswith("_loss"))
        int8 = row["int8"] or {"status": "absent", "reason": ""}
        int8_text = f"{int8['status']}: {int8.get('reason') or ''}".strip(": ")
        if int8.get("mac_share") is not None:
            int8_text += (f" ({100 * int8['mac_share']:.1f} % of conv/matmul MACs in int8"
                          + (f"; fp32: {'; '.join(int8['kept_fp32'])}" if int8["kept_fp32"]
                             else "") + ")")
        first = True
        for output, info in row["outputs"].items():
            gates = []
            for variant in ("int8", "bf16", "quantize_weights", row["result"]):
                for check in info["gates"].get(variant, []):
                    gates.append(f"{variant}: {check['gate']} {_number(check['value'])} / "
                                 f"{_number(check['threshold'])} "
                                 f"{'pass' if check['passed'] else 'FAIL'}")
            lead = ([row["model"], trained, str(row["result"]), int8_text] if first
                    else ["", "", "", ""])
            lines.append("| " + " | ".join(lead + [output, str(info["kind"]),
                                                  "; ".join(dict.fromkeys(gates))]) + " |")
            first = False
        if first:
            lines.append(f"| {row['model']} | {trained} | {row['result']} | {int8_text} | "
                         "(no output gated) | | |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--examples", type=int, default=160, help="examples in each --data")
    parser.add_argument("--runs", type=int, default=5, help="optimize --runs")
    parser.add_argument("--seconds", type=float, default=10.0, help="training time per model")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead")
    parser.add_argument("--small", action="store_true", help="the smallest sizes")
    parser.add_argument("--out", default="leangraph-zoo")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; the zoo has {', '.join(MODELS)}")
    root = pathlib.Path(args.out)
    rows = []
    for name in names:
        model_path, data_path, trained = build(name, root / "models", args.examples,
                                               args.small, args.seconds,
                                               epochs=args.epochs)
        out = root / name
        cmd = command(model_path, data_path, out, args.runs)
        print("$ python", " ".join(cmd[1:]), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        print(done.stdout.strip()[-2000:], flush=True)
        if done.returncode != 0:
            print(done.stderr.strip()[-2000:], flush=True)
            rows.append({"model": name, "trained": trained, "result": f"REFUSED (exit "
                         f"{done.returncode})", "int8": None, "outputs": {}})
            continue
        rows.append(summary(name, json.loads((out / "report.json").read_text()), trained))
    print()
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
