"""optimize's report step: the result chosen and checked, then written with report.md,
report.json and latency.png into the staging folder.
"""

import os
import shutil

from leangraph import hardware
from leangraph.pipeline import evidence
from leangraph.pipeline.choose import choose_result, int8_caller_hint, stacked_steps, thread_hint
from leangraph.pipeline.data import holds_whole_examples
from leangraph.pipeline.outdir import (
    commit,
    make_staging,
)
from leangraph.pipeline.settings import model_ends_setting, reproduce_commands
from leangraph.pipeline.throughput import bf16_note
from leangraph.pipeline.variants import (
    rank_results,
)
from leangraph.pipeline.verify import (
    MIN_SQNR_DB,
    MIN_TOP1_AGREEMENT,
)
from leangraph.quantization.int8 import int8_kernels
from leangraph.report import OptimizeReport, render_json, render_latency_png, render_markdown


def explain_bf16(run):
    """A timed bf16 slower than the best fp32 graph gets one line saying why, measured."""
    by_name = {v.name: v for v in run.variants}
    bf16 = by_name.get("bf16")
    fp32 = [v for v in run.variants if v.kind == "graph" and v.precision == "fp32"
            and v.passed and v.latency is not None]
    if bf16 is None or bf16.latency is None or not fp32:
        return
    best = min(fp32, key=lambda v: v.latency.p50_ms)
    if bf16.latency.p50_ms >= best.latency.p50_ms:
        run.notes.append(bf16_note(bf16.latency.p50_ms, best.latency.p50_ms))


def report_stage(run, bench, prog):
    c, loaded = run.config, run.loaded
    evidence.add_speedups(run.variants)
    ranked = rank_results(run.variants)
    explain_bf16(run)
    settings = {
        "recipe": c.recipe, "precisions": list(c.precisions), "images": run.count,
        "runs": c.runs, "warmup": c.warmup, "rounds": c.rounds, "threads": c.threads,
        "cpus": c.cpus,
        "threads_text": (f"{c.threads} intra-op thread(s)" if c.threads
                         else "TensorFlow's default threads")
        + (f", pinned to CPUs {','.join(map(str, c.cpus))}" if c.cpus else ""),
        "tolerance": c.tolerance, "min_top1": MIN_TOP1_AGREEMENT, "min_sqnr_db": MIN_SQNR_DB,
        "unsafe": bool(c.unsafe),
        "batch": c.batch, "signature": c.signature, "source": loaded.source,
        "data": str(c.data) if isinstance(c.data, (str, os.PathLike)) else None,
        "image_dir": str(c.data) if run.evidence.images else None,
        "preprocess": c.preprocess, "preprocessing": run.mode, "input_source": run.input_source,
        "inputs": [t.to_dict() for t in loaded.inputs],
        "outputs": [t.to_dict() for t in loaded.outputs],
        "transforms": run.transforms, "bench_order": run.order,
        "top1_margin_median": run.margin,
        "verification": run.evidence.to_dict(),
        "output_kinds": dict(zip(run.gates.names, run.gates.kinds)),
        "model_ends": model_ends_setting(c.model_ends),
        # Examples fed one file each: the model was frozen with its batch left open.
        "batch_open": c.data is not None and holds_whole_examples(c.data),
    }
    if not ranked:
        run.notes.append("no eligible graph variant passed verification, so neither "
                         "optimized.pb nor optimized_savedmodel/ was written")
    environment = hardware.environment(c.cpus, c.threads)
    environment["native bf16 (AVX512_BF16 or AMX-BF16)"] = (
        "yes" if bench.cpu_supports_bf16() else "no")
    environment["8-bit kernels"] = int8_kernels()
    report = OptimizeReport(model=loaded.label, outdir=c.outdir, settings=settings,
                            environment=environment, variants=run.variants, result=None,
                            notes=run.notes, step_seconds=run.steps)
    staging = make_staging(c.outdir)
    try:
        written = []
        chosen, settings["confirmed"] = choose_result(run, bench, staging, ranked, prog)
        if chosen is not None:
            written += ["optimized.pb", "optimized_savedmodel"]
        elif ranked:
            run.notes.append("no passing variant's exported SavedModel passed its gate, so "
                             "neither optimized.pb nor optimized_savedmodel/ was written")
        report.result = chosen.name if chosen is not None else None
        settings["stacked"] = stacked_steps(run, bench, chosen, prog)
        settings["threads_hint"] = thread_hint(run, bench, chosen, prog)
        settings["int8_caller_hint"] = int8_caller_hint(run, bench, chosen, ranked, prog)
        report.commands = reproduce_commands(c, settings, chosen)
        prog.item("latency.png")
        (staging / "latency.png").write_bytes(render_latency_png(report))
        written += ["latency.png", "report.md", "report.json"]
        report.files = {name: c.outdir / name for name in written}
        prog.item("report.md, report.json")
        (staging / "report.md").write_bytes(render_markdown(report))
        (staging / "report.json").write_bytes(render_json(report))
        commit(staging, c.outdir, written)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return report
