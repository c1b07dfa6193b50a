"""The shared-search flags of `leangraph tune` (kept light: every CLI start reads them)."""

import os
import sys

from leangraph.search.shared import SharedStudy
from leangraph.search.storage import StorageError


def add_arguments(parser, *, description="many workers, on any machines, share one Optuna study",
                  worker_help="join an existing study; its search settings replace this "
                              "command's, and --trials counts COMPLETE trials study-wide"):
    """The shared-search flags of `leangraph tune` (and `leangraph prune`)."""
    group = parser.add_argument_group("shared search", description)
    group.add_argument("--storage", metavar="URL",
                       help="where the study lives: postgresql://user:password@host:port/db, "
                            "mysql://..., sqlite:///FILE, or a journal file path "
                            "(default: in memory, this process only)")
    group.add_argument("--study", metavar="NAME", help="the study's name in --storage")
    group.add_argument("--worker", action="store_true", help=worker_help)
    group.add_argument("--wait", type=float, default=60.0, metavar="S",
                       help="how long a --worker waits for the study to appear (default 60)")
    group.add_argument("--resume", action="store_true",
                       help="continue a study whose workers have all stopped")
    group.add_argument("--heartbeat", type=int, default=10, metavar="S",
                       help="seconds between a trial's heartbeats; a trial silent for three "
                            "of them is failed and run again (default 10)")


def from_args(args):
    """None for an in-memory search; else a SharedStudy, connected. For --worker and
    --resume the study's search settings are copied into `args`."""
    if not (args.storage or args.study or args.worker or args.resume):
        return None
    if not args.storage:
        raise StorageError("--study, --worker and --resume need --storage URL")
    if args.worker and args.resume:
        raise StorageError("--worker joins a running study and --resume restarts a stopped "
                           "one; give one of them")
    mode = "worker" if args.worker else ("resume" if args.resume else "create")
    shared = SharedStudy.open(args.storage, args.study, mode=mode, wait=args.wait,
                              heartbeat=args.heartbeat)
    if mode == "create":
        shared.sources = {"model": os.path.abspath(args.model),
                          "data": os.path.abspath(args.data), "limit": args.limit}
        return shared
    settings = shared.settings
    print(f"joining study '{args.study}': its search settings apply (recipes "
          f"{','.join(settings['recipes'])}; precisions {','.join(settings['precisions'])}; "
          f"threads {','.join(str(t) for t in settings['threads'])}; "
          f"{settings['n_trials']} trials study-wide)", file=sys.stderr)
    args.recipes = ",".join(settings["recipes"])
    args.precisions = ",".join(settings["precisions"])
    args.threads = ",".join(str(t) for t in settings["threads"])
    args.max_accuracy_drop = settings["max_accuracy_drop"]
    args.trials = settings["n_trials"]
    args.batch_size = settings["batch_size"]
    args.seed = settings["seed"]
    args.limit = shared.study.user_attrs.get("sources", {}).get("limit", args.limit)
    return shared
