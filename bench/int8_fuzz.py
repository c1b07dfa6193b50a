"""Fuzz every entry point that runs a graph with mutated int8 graphs; count process deaths.

    python bench/int8_fuzz.py --cases 10000 --jobs 2             # the held-out seed
    python bench/int8_fuzz.py --seed 1 --cases 2000 --tensorflow-alone   # TF with no checks

The cases are tests/int8_fuzz_cases.py's (test_int8_fuzz.py runs a short slice
of seed 1; the default seed here, 100, is held out from it). A "death" is a
child killed by a signal (a CHECK failure is SIGABRT, a crash SIGSEGV) or
hung; each is printed with the command that rebuilds it. A refusal (a
leangraph error) is the wanted outcome for a mutated graph; a valid control
(unmutated, renamed, a range within bounds) must run, and its refusal is
counted as unexpected.
"""

import argparse
import collections
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import fuzz_cases  # noqa: E402
import int8_fuzz_cases  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--first", type=int, default=0, help="index of the first case")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="child processes at once")
    parser.add_argument("--batch", type=int, default=250, help="cases per child process")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one case may take")
    parser.add_argument("--entry", default=None,
                        help="only cases of this entry point (run, benchmark, quantize, optimize)")
    parser.add_argument("--tensorflow-alone", action="store_true",
                        help="run each graph in a plain TF session without leangraph's checks")
    args = parser.parse_args()

    seed = int8_fuzz_cases.seed_graph()
    indices = [i for i in range(args.first, args.first + args.cases)]
    chunks = [indices[i:i + args.batch] for i in range(0, len(indices), args.batch)]

    def run_chunk(chunk):
        cases = [int8_fuzz_cases.make_case(seed, args.seed, i) for i in chunk]
        if args.entry:
            cases = [c for c in cases if c.entry == args.entry]
        return cases, int8_fuzz_cases.run_batch(cases, timeout_per_case=args.timeout,
                                                tensorflow_alone=args.tensorflow_alone)

    total, cases, elapsed = fuzz_cases.drive(
        chunks, run_chunk, args.jobs, int8_fuzz_cases.describe,
        lambda case: f"python tests/int8_fuzz_cases.py --show {case.seed} {case.index}")
    entries = collections.Counter(c.entry for c in cases)
    controls = collections.Counter(valid=sum(c.valid for c in cases))
    print(f"seed {args.seed}, cases {args.first}..{args.first + args.cases - 1}"
          f"{' (TensorFlow alone)' if args.tensorflow_alone else ''}: {total.ran} run in "
          f"{elapsed:.0f} s, {len(total.deaths)} process deaths, {len(total.unexpected)} "
          f"unexpected, {total.refused} refused, {total.accepted} accepted; "
          f"{controls['valid']} valid controls; entry points {dict(entries)}")
    return 1 if total.deaths or total.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
