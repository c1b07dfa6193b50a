"""`leangraph prune`: a smaller Keras model, fine-tuned by distillation from the original."""

from pathlib import Path

from leangraph.errors import PruneError
from leangraph.pipeline.data_options import add_data_arguments
from leangraph.prune.api import prune
from leangraph.prune.data import output_kind, read_data
from leangraph.prune.report import write_outputs
from leangraph.search import options


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
    options.add_arguments(
        parser,
        description="with --max-accuracy-drop: many processes, on any machines, share one "
                    "Optuna study; each writes the study's best candidate, fine-tuned",
        worker_help="join an existing study (same model, data and settings); --trials counts "
                    "COMPLETE trials study-wide")
    parser.set_defaults(func=run)


def run(args):
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
