"""What `leangraph optimize` found: result objects, and their report.md, report.json, latency.png.

Every number here comes from a measurement made by leangraph.optimize(); this
module only arranges them. The renderers return bytes so the caller decides
where (and how atomically) they are written.
"""

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leangraph.metrics import is_agreement
from leangraph.pipeline.evidence import markdown as evidence_markdown
from leangraph.pipeline.variants import (  # noqa: F401 - their old home, still imported
    FAILED,
    PASSED,
    SKIPPED,
    LatencyStats,
    Variant,
)


#: The name Variant had when it lived here.
VariantResult = Variant


@dataclass
class OptimizeReport:
    """Everything leangraph.optimize() measured and wrote.

    result: the name of the variant written as optimized.pb (None when no
    eligible graph variant passed verification). files: artifact name -> path.
    """

    model: str
    outdir: Path
    settings: dict
    environment: dict
    variants: list
    result: str = None
    files: dict = field(default_factory=dict)
    commands: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    step_seconds: dict = field(default_factory=dict)

    @property
    def ok(self):
        """True when a verified result was written."""
        return self.result is not None

    def variant(self, name):
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_dict(self):
        return {
            "model": self.model,
            "outdir": str(self.outdir),
            "result": self.result,
            "verification": self.settings.get("verification"),
            "settings": self.settings,
            "environment": self.environment,
            "variants": [v.to_dict() for v in self.variants],
            "files": {k: str(v) for k, v in self.files.items()},
            "commands": list(self.commands),
            "notes": list(self.notes),
            "step_seconds": dict(self.step_seconds),
        }

    def verdict(self):
        """The one-line summary: the result and what its verdict rests on."""
        if self.result is None:
            return "no result: no eligible variant passed verification"
        v = self.variant(self.result)
        info = self.settings.get("verification") or {}
        speed = f", {v.speedup:.2f}× the reference" if v.speedup else ""
        confirmed = self.settings.get("confirmed") or {}
        if confirmed.get("b") == v.name and confirmed.get("speedup_ci95"):
            # What the report claims is what the interleaved pairs measured, not the rounds.
            lo, hi = confirmed["speedup_ci95"]
            speed += (f"; {confirmed['speedup']:.2f}× the frozen graph [95 % CI {lo:.2f}, "
                      f"{hi:.2f}] in interleaved pairs")
        if info.get("invented"):
            return (f"result: {v.name} ({v.precision}{speed}), passed on invented inputs "
                    f"({info.get('n_verification')}); give --data to verify on real ones")
        held = "held-out " if info.get("held_out") else ""
        return (f"result: {v.name} ({v.precision}{speed}), passed on "
                f"{info.get('n_verification')} {held}example(s) of {info.get('source')}")

    def table(self):
        """The result table as plain text (what the CLI prints)."""
        return render_text_table(self)

    def __str__(self):
        return self.table()


# ---------------------------------------------------------------------------
# formatting helpers
# ---------------------------------------------------------------------------

def _ms(value):
    return "—" if value is None else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _size(nbytes):
    if nbytes is None:
        return "—"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def _sci(value):
    if value is None:
        return "—"
    if value == 0:
        return "0"
    return f"{value:.1e}"


def _pct(value):
    return "—" if value is None else f"{100.0 * value:.1f} %"


def _db(value):
    if value is None:
        return "—"
    return "exact" if value == float("inf") else f"{value:.1f} dB"


def _speedup(value):
    return "—" if value is None else f"{value:.2f}×"


def _status(v, result):
    text = v.status
    if v.name == result:
        text += " (result)"
    if v.passed and (v.verification or {}).get("invented"):
        text += " on invented inputs"
    return text


def _said(v):
    """"status: reason", once: a speed-only reason already starts with its status."""
    return v.reason if v.reason.startswith(f"{v.status}:") else f"{v.status}: {v.reason}"


def reference_name(report):
    """The variant every other is verified against and compared with."""
    return next((v.name for v in report.variants if v.is_reference), "keras-predict")


def _batch(report):
    return report.settings.get("batch")


def _columns(report):
    ref = reference_name(report)
    ref_text = "Keras predict" if ref == "keras-predict" else ref
    columns = ["Variant", "Precision", "p50 ms", "p90 ms", "mean ms", "ex/s", f"vs {ref_text}"]
    if _batch(report):
        columns += [f"batch {_batch(report)} p50 ms", f"batch {_batch(report)} ex/s"]
    return tuple(columns + ["Nodes", "File", "Max abs diff", "Max rel diff", "Agree",
                            "SQNR", "Status"])


def agreement_shown(v):
    """The table's agreement: the first output's, by its kind, as its gate measured it
    (top-1 for classes, the thresholded classes for binary and multilabel); top-1 where no
    agreement gate ran on a class output; None for a regression output (argmax of a
    regression or of independent sigmoids agrees by chance, not by design)."""
    checks = (v.verification or {}).get("outputs") or []
    if not checks:
        return v.top1_agreement
    first = checks[0]["name"]
    for check in checks:
        if check["name"] == first and is_agreement(check["gate"]):
            return check["value"]
    return v.top1_agreement if checks[0]["kind"] == "classes" else None


def _rate(value):
    return "—" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _rows(report):
    rows = []
    for v in report.variants:
        lat = v.latency
        row = [
            v.name,
            v.precision,
            _ms(lat.p50_ms if lat else None),
            _ms(lat.p90_ms if lat else None),
            _ms(lat.mean_ms if lat else None),
            _rate(v.throughput),
            _speedup(v.speedup),
        ]
        if _batch(report):
            row += [_ms(v.batch_latency.p50_ms if v.batch_latency else None),
                    _rate(v.batch_throughput)]
        rows.append(tuple(row + [
            "—" if v.nodes is None else str(v.nodes),
            _size(v.file_bytes),
            "reference" if v.is_reference else _sci(v.max_abs_diff),
            "reference" if v.is_reference else _sci(v.max_rel_diff),
            "reference" if v.is_reference else _pct(agreement_shown(v)),
            "reference" if v.is_reference else _db(getattr(v, "sqnr_db", None)),
            _status(v, report.result),
        ]))
    return rows


def render_text_table(report):
    columns = _columns(report)
    rows = [columns] + _rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for v in report.variants:
        if v.reason:
            lines.append(f"{v.name}: {_said(v)}")
        if v.batch_note:
            lines.append(f"{v.name}: {v.batch_note}")
    return "\n".join(lines)


def seed_line(report):
    """The seed's one-line summary: Keras X ms -> frozen Y ms (-Z %) -> ... (verified graphs)."""
    base = next((v for v in report.variants if v.name == "keras-predict" and v.latency), None)
    if base is None:
        return None
    parts = [f"Keras predict {_ms(base.latency.p50_ms)} ms"]
    for v in report.variants:
        if v.kind != "graph" or not v.passed or not v.latency:
            continue
        saved = 1.0 - v.latency.p50_ms / base.latency.p50_ms
        parts.append(f"{v.name} {_ms(v.latency.p50_ms)} ms ({-100.0 * saved:+.0f} %)")
    return " → ".join(parts)


def _md_escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def variant_line(v):
    """report.md's line for one variant: how it was made, what it measured beyond the table's
    columns, and why it failed or was skipped."""
    detail = f"- `{v.name}`: {v.description}"
    if v.transform:
        detail += f"; transforms `{v.transform}`"
    if v.bench_precision != "fp32":
        detail += f"; timed with the timer's precision={v.bench_precision}"
    whole = (v.verification or {}).get("examples_unchanged") or {}
    if whole and not v.is_reference:
        detail += ("; verification examples with every position's top-1 class unchanged: " +
                   ", ".join(f"`{name}` {100 * share:.1f} %" for name, share in whole.items()))
    if v.reason:
        status, _, reason = _said(v).partition(": ")
        detail += f". **{status}:** {reason}"
    if v.batch_note:
        detail += f". {v.batch_note}"
    return detail


def render_markdown(report):
    """report.md: the seed-style table, the verification gate, the settings and how to reproduce."""
    s = report.settings
    env = report.environment
    out = []
    out.append(f"# leangraph optimize: {report.model}")
    out.append("")
    if report.result:
        r = report.variant(report.result)
        ref = reference_name(report)
        speed = (f", {r.speedup:.2f}× {'Keras predict' if ref == 'keras-predict' else ref}"
                 if r.speedup and ref != r.name else "")
        out.append(f"**Result:** `{report.result}` ({r.description}){speed}, written as "
                   "`optimized.pb` and `optimized_savedmodel/`.")
    else:
        out.append("**No result written:** no eligible graph variant passed verification "
                   "(see the Status column).")
    line = seed_line(report)
    if line:
        out.append("")
        out.append(f"Seed-style summary (p50, verified graph variants): {line}")
    out.append("")
    columns = _columns(report)
    out.append("| " + " | ".join(columns) + " |")
    align = ["---" if i in (0, 1, len(columns) - 1) else "---:" for i in range(len(columns))]
    out.append("|" + "|".join(align) + "|")
    for row in _rows(report):
        out.append("| " + " | ".join(_md_escape(c) for c in row) + " |")
    out.append("")
    ref = reference_name(report)
    ref_text = "Keras `predict`" if ref == "keras-predict" else f"`{ref}` (the model as given)"
    out.append(f"Latency: batch 1, {s['runs']} timed runs per variant after {s['warmup']} "
               f"warm-up runs, in {s['rounds']} interleaved round(s) in one process on the same "
               f"input ({s['threads_text']}); ex/s is examples per second from the p50. "
               f"Speed-up: {ref_text}'s p50 over the variant's.")
    if _batch(report):
        out.append(f"Batch {_batch(report)}: one more round per variant, after the batch-1 "
                   "rounds, on the same inputs repeated to fill the batch.")
    out.append(f"Differences: against {ref_text} on the same {s['images']} input(s) "
               f"({s['input_source']}); relative = max|a − b| / max|reference output|; "
               "Agree: the first output's agreement by its kind (top-1 for classes, the "
               "thresholded classes for binary and multilabel outputs).")
    out.append("")
    out.append("## Variants")
    out.append("")
    out.extend(variant_line(v) for v in report.variants)
    out.append("")
    out.append("## Verification gate")
    out.append("")
    out.append(f"- fp32 variants: max relative difference ≤ {s['tolerance']:g} on every output.")
    gates = {v.gate for v in report.variants if v.precision != "fp32"}
    if "sqnr" in gates:
        out.append(f"- bf16, int8 and 8-bit-weight variants: output SQNR against the reference "
                   f"≥ {s.get('min_sqnr_db', 20):g} dB, because the reference's top-1 margin is "
                   "too small for top-1 agreement to mean anything (see the notes).")
    else:
        out.append(f"- bf16, int8 and 8-bit-weight variants: on every output, its kind's gate "
                   f"(classes: top-1 agreement ≥ {100 * s['min_top1']:.0f} %; binary and "
                   "multilabel: agreement of the thresholded classes; regression: max relative "
                   f"error) and SQNR ≥ {s.get('min_sqnr_db', 20):g} dB.")
    bits = {v.quantization.get("weight_bits", 8) for v in report.variants
            if v.precision == "int8" and v.quantization}
    if bits:  # an int8 graph was built
        if bits == {7}:
            where = ("it computes right on any x86-64 CPU with AVX2 or VNNI: its Conv2D weights "
                     "on unsigned inputs are 7-bit, which CPUs without VNNI add without saturating.")
        else:
            where = ("it needs a CPU with VNNI: without it, oneDNN's Conv2D kernels saturate "
                     "8-bit weights (`--int8-weight-bits 7` makes a graph for such CPUs).")
        out.append("- int8 runs on oneDNN's int8 kernels of TensorFlow's x86-64 CPU build "
                   "(fastest with AVX512_VNNI/AMX, faster than fp32 with AVX2 alone too); the "
                   f"written graph needs such a TensorFlow, and {where}")
    out.append("- A FAILED variant is never written as the result.")
    out.append("")
    out.extend(evidence_markdown(s, report.variants))
    if report.notes:
        out.append("## Notes")
        out.append("")
        for note in report.notes:
            out.append(f"- {note}")
        out.append("")
    out.append("## Environment")
    out.append("")
    for key, value in env.items():
        out.append(f"- {key}: {value}")
    out.append("")
    out.append("## Reproduce")
    out.append("")
    out.append("```sh")
    out.extend(report.commands)
    out.append("```")
    out.append("")
    return "\n".join(out).encode("utf-8")


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def render_json(report):
    """report.json: every setting, measurement and latency sample."""
    return (json.dumps(_jsonable(report.to_dict()), indent=2) + "\n").encode("utf-8")


def render_latency_png(report):
    """latency.png as bytes: each timed variant's latency distribution (box + every sample)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    timed = [v for v in report.variants if v.latency]
    height = 1.2 + 0.55 * max(len(timed), 1)
    fig = Figure(figsize=(9, height), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    if not timed:
        ax.text(0.5, 0.5, "no variant was timed", ha="center", va="center")
        ax.set_axis_off()
    else:
        labels, data, colors = [], [], []
        for v in reversed(timed):
            labels.append(f"{v.name} ({v.precision})" + ("" if v.passed else f" {v.status}"))
            data.append(v.latency.samples_ms)
            if not v.passed:
                colors.append("#c0392b")
            elif v.name == report.result:
                colors.append("#1e8449")
            elif v.kind == "keras":
                colors.append("#7f8c8d")
            else:
                colors.append("#2e86c1")
        positions = np.arange(1, len(data) + 1)
        parts = ax.boxplot(data, positions=positions, vert=False, widths=0.55, showfliers=False,
                           whis=(5, 95),
                           patch_artist=True, medianprops={"color": "black"})
        for patch, color in zip(parts["boxes"], colors):
            patch.set_facecolor(color)
            patch.set_alpha(0.35)
        rng = np.random.default_rng(0)
        lowest = min(float(np.min(d)) for d in data)
        upper = max(float(np.percentile(d, 99)) for d in data)
        # Keras and a frozen graph can differ 100x: a log axis keeps both readable.
        log = upper / max(lowest, 1e-9) > 20
        for pos, samples, color in zip(positions, data, colors):
            jitter = rng.uniform(-0.18, 0.18, size=len(samples))
            ax.scatter(samples, pos + jitter, s=6, color=color, alpha=0.6, linewidths=0)
            p50 = float(np.median(samples))
            right = min(float(np.max(samples)), upper * 1.2)
            ax.annotate(f"p50 {p50:.3g} ms", (right, pos), xytext=(6, -3),
                        textcoords="offset points", fontsize=7)
        ax.set_yticks(positions)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xlabel("latency per batch-1 run (ms)" + (", log scale" if log else ""))
        if log:
            ax.set_xscale("log")
            ax.set_xlim(lowest * 0.8, upper * 2.0)
        else:
            ax.set_xlim(0, upper * 1.25)
        ax.grid(axis="x", alpha=0.3, which="both" if log else "major")
        count = timed[0].latency.count
        ax.set_title(f"{report.model}: {count} timed runs per variant\n"
                     "green: the result, red: FAILED verification, grey: Keras; "
                     "box: quartiles, whiskers: 5 to 95 %", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
