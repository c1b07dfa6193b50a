"""The shared-search flags of `leangraph tune` (kept light: every CLI start reads them)."""

import os
import sys

from leangraph.pipeline.options import Option, add_options, count, non_negative
from leangraph.search.shared import SharedStudy
from leangraph.search.storage import StorageError


#: The shared-search flags; their keywords are prune()'s (tune takes a SharedStudy, which
#: from_args opens from them).
SHARED = (
    Option(("--storage",), "where the study lives: postgresql://user:password@host:port/db, "
           "mysql://..., sqlite:///FILE, or a journal file path (default: in memory, this "
           "process only)", keyword="storage", metavar="URL"),
    Option(("--study",), "the study's name in --storage", keyword="study", metavar="NAME"),
    Option(("--worker",), "join an existing study; its search settings replace this "
           "command's, and --trials counts COMPLETE trials study-wide", keyword="worker",
           action="store_true"),
    Option(("--wait",), "how long a --worker waits for the study to appear (default "
           "%(default)g)", keyword="wait", default=60.0, type=non_negative, metavar="S"),
    Option(("--resume",), "continue a study whose workers have all stopped", keyword="resume",
           action="store_true"),
    Option(("--heartbeat",), "seconds between a trial's heartbeats; a trial silent for three "
           "of them is failed and run again (default %(default)s)", keyword="heartbeat",
           default=10, type=count, metavar="S"),
)


def add_arguments(parser, *, description="many workers, on any machines, share one Optuna study",
                  worker_help=None):
    """The shared-search flags of `leangraph tune` and `leangraph prune`, as one group."""
    group = parser.add_argument_group("shared search", description)
    add_options(group, SHARED, **({"worker": {"help": worker_help}} if worker_help else {}))


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
