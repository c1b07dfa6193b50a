"""`leangraph study show`: what a shared tune study holds, and its best graph."""
from leangraph.search import study


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "study",
        help="read a shared tune study (leangraph tune --storage URL --study NAME)",
        description="Reads a study that `leangraph tune --storage` workers share.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show", help="every trial, the Pareto table and the best trial",
        description=("Prints where the study was made, every trial (its worker, latency, "
                     "accuracy, error, retries), the Pareto table and the best trial. With "
                     "--export OUT it also rebuilds the best graph from the recorded model "
                     "(checked by sha256) and writes OUT/best.pb, report.json and report.md."))
    show.add_argument("--storage", required=True, metavar="URL",
                      help="postgresql://..., mysql://..., sqlite:///FILE or a journal file")
    show.add_argument("--study", required=True, metavar="NAME")
    show.add_argument("--json", action="store_true", help="print the study as JSON")
    show.add_argument("--export", metavar="OUT", help="write the best graph and its report here")
    show.add_argument("--model", help="the model, where it is not at the recorded path")
    show.add_argument("--data", help="the .npz data, where it is not at the recorded path")
    parser.set_defaults(func=run)


def run(args):
    import json

    if args.json:
        with study.opened(args.storage, args.study) as opened:
            print(json.dumps(study.summary(opened), indent=2))
    else:
        print(study.show(args.storage, args.study))
    if args.export:
        out = study.export(args.storage, args.study, args.export, model=args.model,
                           data=args.data)
        print(f"wrote {out / 'best.pb'}, {out / 'report.json'}, {out / 'report.md'}")
    return 0
