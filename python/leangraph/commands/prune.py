"""`leangraph prune`: a smaller Keras model, fine-tuned by distillation from the original."""

import os
import shutil
import tempfile
from pathlib import Path

from leangraph.errors import LeangraphError, OutputError

OUTPUTS = ("pruned.keras", "report.json", "report.md")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "prune",
        help="remove channels from a Keras model and fine-tune it by distillation",
        description=(
            "Removes whole channels (filters, units) from MODEL, coupled channels together, "
            "or with --method lowrank factorises its Dense and Conv2D layers where that is "
            "measurably faster, "
            "and fine-tunes the result by distillation from MODEL on --data. 15 % of --data is "
            "held out for early stopping and for the accuracy the report states. Writes "
            "OUT/pruned.keras, OUT/report.json and OUT/report.md (and OUT/pareto.png after a "
            "search), all or nothing."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="Keras model (.keras or .h5)")
    from leangraph.pipeline.data_options import add_data_arguments

    add_data_arguments(parser, required=True, calibration=False, gates=False, samples=False,
                       accuracy_drop=False)
    parser.add_argument("--preprocess", default="none", metavar="NAME",
                        help="preprocessing of --data images (tf, caffe, torch, none; default "
                             "none: pixels 0..255)")
    goal = parser.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-macs", type=float, metavar="R",
                      help="keep this share of the MACs, 0 < R < 1 (no search)")
    goal.add_argument("--max-accuracy-drop", type=float, metavar="POINTS",
                      help="search per-group ratios for the lowest latency within this loss")
    parser.add_argument("-o", "--out", default="prune-out", help="output folder (default prune-out)")
    parser.add_argument("--method", default="channels", choices=("channels", "lowrank", "both"),
                        help="channels: remove channels; lowrank: factorise Dense and Conv2D "
                             "layers (SVD, Tucker-2) where the timer measures the whole model "
                             "faster; both: channels, then lowrank (default channels)")
    parser.add_argument("--batch", type=int, default=1,
                        help="with --method lowrank/both: the batch at which each "
                             "factorisation must be measurably faster (default 1)")
    parser.add_argument("--criterion", default="l2", choices=("l2", "fpgm", "taylor"),
                        help="channel importance (default l2)")
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (default 10)")
    parser.add_argument("--seconds", type=float, default=None, help="fine-tuning time budget")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.7,
                        help="weight of the distillation loss against the hard labels")
    parser.add_argument("--trials", type=int, default=12, help="search trials (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unsafe", action="store_true",
                        help="allow Lambda layers that carry Python code")
    parser.add_argument("--int8", action="store_true",
                        help="make the pruned model int8-ready: score its post-training int8 "
                             "graph held out and, when that loses more than --int8-max-drop "
                             "points, fine-tune it through fake quantization")
    parser.add_argument("--int8-max-drop", type=float, default=0.5, metavar="POINTS",
                        help="with --int8: the int8 loss allowed before quantization-aware "
                             "fine-tuning (default 0.5)")
    parser.add_argument("--qat-epochs", type=int, default=3,
                        help="with --int8: quantization-aware fine-tuning epochs (default 3)")
    from leangraph.search import options

    options.add_arguments(
        parser,
        description="with --max-accuracy-drop: many processes, on any machines, share one "
                    "Optuna study; each writes the study's best candidate, fine-tuned",
        worker_help="join an existing study (same model, data and settings); --trials counts "
                    "COMPLETE trials study-wide")
    parser.set_defaults(func=run)


def read_data(model, source, preprocess="none", unsafe=False):
    """(the Keras model, x, y or None): --data read by the one reader (pipeline.data)
    against the model's one input and its first output's labels."""
    from leangraph.errors import PruneError
    from leangraph.freeze import TensorInfo, load_keras
    from leangraph.images import resolve_preprocessing
    from leangraph.pipeline import data as data_reader

    model = load_keras(model, unsafe=unsafe)
    if len(model.inputs) != 1:
        raise PruneError(f"the model has {len(model.inputs)} inputs; pruning needs one")

    def info(tensor):
        return TensorInfo(tensor.name, str(getattr(tensor, "dtype", None) or "float32"),
                          tuple(tensor.shape))

    data = data_reader.read(source, [info(model.inputs[0])], [info(model.outputs[0])],
                            preprocessing=resolve_preprocessing(preprocess))
    return model, data.arrays[0], data.labels.get(model.outputs[0].name)


def write_outputs(model, report, out):
    """Writes the three files into `out` so that either all of them land or none does."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output {out} exists and is not a folder")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"folder {parent} does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=parent))
    try:
        model.save(staging / "pruned.keras")
        (staging / "report.json").write_text(report.to_json())
        (staging / "report.md").write_text(report.to_markdown())
        names = list(OUTPUTS)
        if report.search.get("trials"):
            from leangraph.prune.search import plot_trials

            plot_trials(report.search, staging / "pareto.png")
            names.append("pareto.png")
        if not out.exists():
            os.replace(staging, out)
            return [out / name for name in names]
        for name in names:
            os.replace(staging / name, out / name)
        return [out / name for name in names]
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def output_kind(items, model):
    """The kind --output-kind sets for the model's one output (KIND or NAME=KIND, NAME the
    output layer's name), or None."""
    from leangraph.errors import PruneError
    from leangraph.metrics import parse_kind

    if not items:
        return None
    if len(items) > 1:
        raise PruneError("--output-kind: the model has one output; give one kind")
    name, sep, kind = items[0].rpartition("=")
    layer = model.outputs[0]._keras_history.operation.name
    if sep and name.strip() not in (layer, model.outputs[0].name):
        raise PruneError(f"--output-kind: no output '{name}' (the output: {layer})")
    return parse_kind(kind)


def run(args):
    from leangraph.errors import PruneError
    from leangraph.prune.api import prune

    if (args.storage is None) != (args.study is None):
        raise PruneError("--storage and --study go together")
    if (args.worker or args.resume) and args.storage is None:
        raise PruneError("--worker and --resume need --storage URL and --study NAME")

    model, x, y = read_data(args.model, args.data, args.preprocess, args.unsafe)
    if y is None:
        print("no labels (y) in --data: the held-out score is agreement with MODEL")
    pruned, report = prune(
        model, x, y,
        target_macs=args.target_macs, max_accuracy_drop=args.max_accuracy_drop,
        criterion=args.criterion, epochs=args.epochs, seconds=args.seconds,
        temperature=args.temperature, alpha=args.alpha, n_trials=args.trials,
        seed=args.seed, unsafe=args.unsafe, storage=args.storage, study=args.study,
        worker=args.worker, resume=args.resume, wait=args.wait, heartbeat=args.heartbeat,
        int8=args.int8, int8_max_drop=args.int8_max_drop, qat_epochs=args.qat_epochs,
        method=args.method, batch=args.batch, output_kind=output_kind(args.output_kind, model),
        max_mae_increase=args.max_mae_increase,
    )
    report.source = str(Path(args.model).resolve())  # what `leangraph optimize` stacks onto
    paths = write_outputs(pruned, report, args.out)
    what, before, after, change = report.score_rows()
    print(f"MACs {report.macs_before:,} -> {report.macs_after:,} ({report.macs_ratio:.3f}x); "
          f"{what} {before} -> {after} ({change})")
    if report.int8:
        print(f"int8: {report.int8['decision']}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
