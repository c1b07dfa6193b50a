"""optimize's settings: the defaults, the checked OptimizeConfig, the flags' aliases,
the baseline a pruned model is timed against, and the commands that reproduce a run.
"""

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leangraph.errors import UsageError
from leangraph.freezing.graphdef import split_names
from leangraph.freezing.placeholders import parse_feeds
from leangraph.pipeline.data import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_VERIFY_SAMPLES,
)
from leangraph.pipeline import precisions as registry
from leangraph.pipeline.options import OPTIMIZE, command_line
from leangraph.pipeline.timing import bench_kwargs


#: What optimize() uses when no model is given.
DEFAULT_MODEL = "keras.applications.Xception(weights=None)"


DEFAULT_MODEL_SIZE = 299


DEFAULT_SEED = 0


DEFAULT_PRECISIONS = ("fp32", "bf16", "int8")


def parse_precisions(precisions):
    if isinstance(precisions, str):
        precisions = [p for p in precisions.split(",")]
    chosen = [str(p).strip().lower() for p in precisions if str(p).strip()]
    unknown = [p for p in chosen if p not in registry.result_names()]
    if unknown or not chosen:
        raise UsageError(
            f"--precision: unknown precision {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(registry.result_names())}"
        )
    return tuple(dict.fromkeys(chosen))


def positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def model_ends_setting(ends):
    """--inputs, --outputs and --feed as the report keeps them: 'a,b' and {name: value}."""
    kept = {key: ",".join(split_names(ends.get(key)) or []) or None
            for key in ("inputs", "outputs")}
    kept["feeds"] = {k: str(v) for k, v in parse_feeds(ends.get("feeds")).items()} or None
    return kept


def reproduce_commands(config, settings, result):
    """The commands that reproduce a run: the whole run (every option it was given, from
    their one declaration, pipeline.options), timing the result alone, and the result step
    by step."""
    quote = shlex.quote
    model, outdir = config.model_path, config.outdir
    cmd = ["leangraph", "optimize"]
    if model is not None:
        cmd.append(str(model))
    cmd += ["-o", str(outdir)] + command_line(OPTIMIZE, config)
    lines = ["# the whole run", " ".join(quote(c) for c in cmd)]
    if result is not None and result.kind == "graph":
        bench = ["leangraph-bench", "--graph", str(Path(outdir) / "optimized.pb"),
                 "--runs", str(settings["runs"])]
        if settings["threads"]:
            bench += ["--intra-op-threads", str(settings["threads"])]
        if settings["cpus"]:
            bench += ["--cpus", ",".join(map(str, settings["cpus"]))]
        if result.bench_precision != "fp32":
            bench += ["--precision", result.bench_precision]
        lines += ["# time the result alone", " ".join(quote(c) for c in bench)]
        freeze_flags = "".join(" " + quote(c) for c in _freeze_flags(config, settings))
        if model is not None and result.name == "frozen":
            lines += ["# the result step by step",
                      f"leangraph freeze {quote(str(model))} -o optimized.pb{freeze_flags}"]
        elif model is not None and result.transform:
            frozen = "frozen.pb"
            lines += ["# the result step by step",
                      f"leangraph freeze {quote(str(model))} -o {frozen}{freeze_flags}"]
            source = frozen
            if result.base and result.base not in ("frozen",):
                base_transform = settings["transforms"].get(result.base)
                if base_transform:
                    lines.append(f"leangraph transform --in_graph {frozen} "
                                 f"--out_graph {result.base}.pb "
                                 f"--transforms {quote(base_transform)}")
                    source = f"{result.base}.pb"
            lines.append(f"leangraph transform --in_graph {source} --out_graph optimized.pb "
                         f"--transforms {quote(result.transform)}")
    return lines


def _freeze_flags(config, settings):
    """The `leangraph freeze` flags that freeze MODEL as optimize did: its ends, feeds,
    signature, input shapes and weights, --unsafe, and --batch none where optimize kept the
    batch open (examples fed one file each)."""
    wanted = {"--inputs", "--outputs", "--feed", "--signature", "--input-shape", "--weights",
              "--unsafe"}
    flags = command_line([o for o in OPTIMIZE if o.flag in wanted], config)
    if settings.get("batch_open"):
        flags += ["--batch", "none"]
    return flags


@dataclass
class OptimizeConfig:
    """optimize()'s settings, checked (see optimize() for what each means)."""

    model: object
    outdir: Path
    model_path: Path = None
    recipe: str = "deploy"
    precisions: tuple = DEFAULT_PRECISIONS
    images: int = None
    image_dir: object = None
    preprocess: str = None
    threads: int = None
    cpus: list = None
    tolerance: float = 1e-4
    unsafe: bool = False
    runs: int = None
    warmup: int = None
    rounds: int = None
    extra_variants: dict = field(default_factory=dict)
    allow_io_ops: bool = False
    signature: str = None
    batch: int = None
    calibration_dir: object = None
    input_shapes: object = None
    weights: object = None
    baseline: object = None
    baseline_note: str = None
    int8_weight_bits: int = None
    data: object = None
    #: the names the user gave the data and calibration data by (old or new)
    data_flags: tuple = ("--data", "--calibration-data")
    verify_samples: int = DEFAULT_VERIFY_SAMPLES
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    output_kinds: object = None
    gates: object = None
    max_accuracy_drop: float = 0.5
    max_mae_increase: float = 0.1
    #: inputs=, outputs= and feeds= for load_model (TF1 graphs and checkpoints)
    model_ends: dict = field(default_factory=dict)


def run_bench_kwargs(config):
    return bench_kwargs(config.threads, config.cpus)


def resolve_baseline(baseline, model_path):
    """(the baseline model, a note saying where it came from), or (None, None).

    Without an explicit one, a `leangraph prune` report.json beside MODEL names the
    model it pruned."""
    if baseline is not None:
        if isinstance(baseline, (str, os.PathLike)) and not Path(baseline).exists():
            raise UsageError(f"--baseline: {baseline} does not exist")
        return baseline, None
    if model_path is None:
        return None, None
    found = model_path.parent / "report.json"
    try:
        recorded = json.loads(found.read_text())
    except (OSError, ValueError):
        return None, None
    source = recorded.get("source") if isinstance(recorded, dict) else None
    if recorded.get("kind") != "leangraph prune" or not source or not Path(source).exists():
        return None, None
    return source, f"{model_path.name} was pruned from {source} ({found}): the baseline"


def data_aliases(data, image_dir, calibration_data, calibration_dir):
    """--image-dir and --calibration-dir are the old names of --data and --calibration-data."""
    if data is not None and image_dir is not None:
        raise UsageError("--image-dir is the old name of --data: give one of them")
    if calibration_data is not None and calibration_dir is not None:
        raise UsageError("--calibration-dir is the old name of --calibration-data: give one")
    return (data if data is not None else image_dir,
            calibration_data if calibration_data is not None else calibration_dir)
