"""Fuzz leangraph.transform with mutated graphs in child processes; count process deaths.

    python bench/fuzz.py --cases 100000 --jobs 2            # the fixed-seed corpus
    python bench/fuzz.py --seed 7 --cases 5000 --first 2000  # another slice or seed
    python bench/fuzz.py --atheris -atheris_runs=100000      # coverage-guided, in-process

A "death" is a child that exited by a signal (a CHECK failure is SIGABRT) or
hung; each is printed with the command that rebuilds its case. A refused
graph (a leangraph error) is the wanted outcome for bad input.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import fuzz_cases  # noqa: E402


def run_corpus(args):
    seeds = fuzz_cases.seed_graphs()
    transforms = fuzz_cases.available_transforms()
    print(f"{len(transforms)} transforms: {' '.join(t.split('(')[0] for t in transforms)}", flush=True)
    chunks = [range(start, min(start + args.batch, args.first + args.cases))
              for start in range(args.first, args.first + args.cases, args.batch)]

    def run_chunk(indices):
        cases = [fuzz_cases.make_case(seeds, args.seed, i, transforms) for i in indices]
        return cases, fuzz_cases.run_batch(cases, timeout_per_case=args.timeout,
                                           tensorflow_alone=args.tensorflow_alone)

    total, _, elapsed = fuzz_cases.drive(
        chunks, run_chunk, args.jobs, fuzz_cases.describe,
        lambda case: f"python tests/fuzz_cases.py --show {case.seed} {case.index}",
        every=max(1, len(chunks) // 20))
    print(f"seed {args.seed}, cases {args.first}..{args.first + args.cases - 1}: "
          f"{total.ran} run in {elapsed:.0f} s ({total.ran / max(elapsed, 1e-9):.0f}/s), "
          f"{len(total.deaths)} process deaths, {len(total.unexpected)} unexpected exceptions, "
          f"{total.refused} refused, {total.accepted} accepted")
    return 1 if total.deaths else 0


def run_atheris(argv):
    """Coverage-guided fuzzing of the native entry point on raw bytes and transform strings."""
    import atheris

    with atheris.instrument_imports():
        import leangraph
    from leangraph._tfcheck import load_native

    native = load_native()
    seeds = list(fuzz_cases.seed_graphs().values())
    steps = fuzz_cases.TRANSFORMS + fuzz_cases.HOSTILE_STEPS

    def one_input(data):
        fdp = atheris.FuzzedDataProvider(data)
        step = steps[fdp.ConsumeIntInRange(0, len(steps) - 1)]
        if fdp.ConsumeBool():
            step = fdp.ConsumeUnicodeNoSurrogates(40)
        graph = seeds[fdp.ConsumeIntInRange(0, len(seeds) - 1)]
        if fdp.ConsumeBool():
            # Splice fuzzer bytes into a real graph so parsing often succeeds.
            at = fdp.ConsumeIntInRange(0, len(graph))
            graph = graph[:at] + fdp.ConsumeBytes(64) + graph[at + fdp.ConsumeIntInRange(0, 64):]
        else:
            graph = fdp.ConsumeBytes(fdp.remaining_bytes())
        try:
            native.transform(graph, step, ["input"], ["output"])
        except leangraph.LeangraphError:
            pass

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--first", type=int, default=0, help="index of the first case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="child processes at once")
    parser.add_argument("--batch", type=int, default=500, help="cases per child process")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one case may take")
    parser.add_argument("--tensorflow-alone", action="store_true",
                        help="call TF's transform_graph directly, without leangraph's checks "
                             "(shows what the checks prevent)")
    parser.add_argument("--atheris", action="store_true", help="run atheris instead (rest of argv)")
    args, rest = parser.parse_known_args()
    if args.atheris:
        return run_atheris(rest)
    if rest:
        parser.error(f"unknown arguments {rest}")
    return run_corpus(args)


if __name__ == "__main__":
    sys.exit(main())
