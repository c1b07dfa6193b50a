"""Command-line options, each declared once: its flags, help, parsing and default, the
keyword it sets, and how a value goes back on a command line.

`leangraph optimize` adds its flags from OPTIMIZE, turns the parsed arguments into
optimize()'s keywords with `keywords`, and writes the command that reproduces a run
from the checked settings with `command_line`, so a flag cannot be parsed in one place
and forgotten in another. The model-loading (IO) and data flags are shared with
`freeze`, `tune` and `prune`, which add them from the same declarations.
"""

import argparse
import os
from dataclasses import dataclass, replace

from leangraph.errors import UsageError
from leangraph.pipeline.data import DEFAULT_CALIBRATION_SAMPLES, DEFAULT_VERIFY_SAMPLES

#: How many invented inputs optimize verifies on without --data.
DEFAULT_IMAGES = 100


def count(text):
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text):
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def positive(text):
    """argparse type: a finite number > 0."""
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


@dataclass(frozen=True)
class Option:
    """One option.

    flags: the command-line names; the first long one is written back. keyword:
    optimize()'s keyword (None: the CLI alone has it). setting: where the checked
    value lives on optimize's OptimizeConfig, a field or "field.key" (None: it is not
    written back). default: what the value is when not given (not written back then).
    """

    flags: tuple
    help: str
    #: the driver's keyword it sets (optimize's, tune's or prune's, by the tuple it is in)
    keyword: str = None
    setting: str = None
    default: object = None
    type: object = None
    metavar: str = None
    action: str = None
    choices: tuple = None
    dest: str = None
    #: the parsed value -> the keyword's value (e.g. "1,2" -> [1, 2]), applied by keywords()
    convert: object = None

    @property
    def name(self):
        """argparse's dest."""
        if self.dest:
            return self.dest
        long = next(f for f in self.flags if f.startswith("--"))
        return long[2:].replace("-", "_")

    @property
    def flag(self):
        return next(f for f in self.flags if f.startswith("--"))

    def add_to(self, parser, **overrides):
        kwargs = {"dest": self.name, "help": self.help, "default": self.default}
        for key in ("type", "metavar", "action", "choices"):
            value = getattr(self, key)
            if value is not None:
                kwargs[key] = value
        if self.action == "store_true":
            kwargs.pop("default")
        kwargs.update(overrides)
        parser.add_argument(*self.flags, **kwargs)

    def argv(self, value):
        """This option with `value` on a command line (nothing for its default)."""
        if value is None or value is False or value == self.default or value in ((), [], {}):
            return []
        if self.action == "store_true":
            return [self.flag]
        if isinstance(value, dict):
            return [part for k, v in value.items() for part in (self.flag, f"{k}={_text(v)}")]
        if self.action == "append" and isinstance(value, (list, tuple)):
            return [part for v in value for part in (self.flag, _text(v))]
        return [self.flag, _text(value)]


def _text(value):
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ---------------------------------------------------------------------------
# the declarations
# ---------------------------------------------------------------------------

IO = (
    Option(("--inputs",), "the graph's inputs, node or tensor names (a TF1 "
           "PlaceholderWithDefault named here becomes an input, unnamed ones keep their "
           "defaults; another tensor, such as IteratorGetNext:0, gets a new Placeholder in its "
           "place)", keyword="inputs", setting="model_ends.inputs", metavar="A,B"),
    Option(("--outputs",), "the tensors to read, node or tensor names (needed for a TF1 "
           "checkpoint; a subset of the outputs otherwise)", keyword="outputs",
           setting="model_ends.outputs", metavar="A,B"),
    Option(("--feed",), "freeze a placeholder to a value: a scalar (keep_prob=1.0) or a "
           "comma-separated vector (dim=128,128,128); repeatable", keyword="feeds",
           setting="model_ends.feeds", action="append", metavar="NAME=VALUE"),
)

DATA_HELP = (".npz (arrays named after the inputs, optional y / y_<output> labels; one array "
             "under any name for a one-input model), .npy, a folder of JPEG/PNG images, or a "
             "folder of one-example .npy/.npz files (each fed as is)")

DATA = Option(("--data",), f"the examples to verify and calibrate on: {DATA_HELP}",
              keyword="data", setting="data", metavar="PATH")
CALIBRATION_DATA = Option(("--calibration-data",), "calibrate int8 on these examples instead "
                          "of a split of --data (same forms)", keyword="calibration_data",
                          setting="calibration_dir", metavar="PATH", dest="calibration_data")
VERIFY_SAMPLES = Option(("--verify-samples",), "examples held out for verification at most "
                        "(default %(default)s)", keyword="verify_samples",
                        setting="verify_samples", default=DEFAULT_VERIFY_SAMPLES, type=count,
                        metavar="N")
CALIBRATION_SAMPLES = Option(("--calibration-samples",), "examples int8 calibrates on at most "
                             "(default %(default)s)", keyword="calibration_samples",
                             setting="calibration_samples", default=DEFAULT_CALIBRATION_SAMPLES,
                             type=count, metavar="N")
OUTPUT_KIND = Option(("--output-kind",), "how an output is gated: classes, binary, multilabel "
                     "or regression (default: read from the op that produces it; repeatable)",
                     keyword="output_kinds", setting="output_kinds", action="append",
                     metavar="NAME=KIND")
GATE = Option(("--gate",), "an output's threshold: its kind's gate, or agreement, relative or "
              "sqnr (repeatable)", keyword="gates", setting="gates", action="append",
              metavar="NAME=[GATE:]VALUE")
MAX_ACCURACY_DROP = Option(("--max-accuracy-drop",), "with labels: accuracy a variant may "
                           "lose, in percentage points (default %(default)s)",
                           keyword="max_accuracy_drop", setting="max_accuracy_drop",
                           default=0.5, type=non_negative, metavar="POINTS")
MAX_MAE_INCREASE = Option(("--max-mae-increase",), "with labels: how much a regression "
                          "output's MAE may grow, relative (default %(default)s)",
                          keyword="max_mae_increase", setting="max_mae_increase", default=0.1,
                          type=non_negative, metavar="FRACTION")

OPTIMIZE = (
    Option(("-o", "--out", "--outdir"), "output folder, written atomically (default: "
           "%(default)s)", keyword="outdir", default="leangraph-optimized", dest="outdir"),
    Option(("--signature",), "SavedModel signature (default serving_default)",
           keyword="signature", setting="signature"),
    Option(("--input-shape", "--input_shape"), "fix an input's shape, e.g. "
           "image:1,224,224,3 (repeatable; the name may be left out for a one-input model)",
           keyword="input_shapes", setting="input_shapes", action="append",
           metavar="NAME:SHAPE", dest="input_shape"),
    Option(("--weights",), "weights file for an architecture .json", keyword="weights",
           setting="weights"),
    *IO,
    Option(("--batch",), "also time batch N (the report gives latency and throughput)",
           keyword="batch", setting="batch", type=count, metavar="N"),
    Option(("--recipe",), "leangraph recipe (default: %(default)s)", keyword="recipe",
           setting="recipe", default="deploy"),
    Option(("--precision", "--precisions"), "precisions the result may have, of fp32, bf16 and "
           "int8 (default: %(default)s)", keyword="precisions", setting="precisions",
           default="fp32,bf16,int8", dest="precision"),
    Option(("--baseline",), "the model MODEL was made from (e.g. the original `leangraph "
           "prune` pruned; by default the one a prune report.json beside MODEL names): each "
           "step's speed-up from it is timed and reported", keyword="baseline",
           setting="baseline", metavar="MODEL"),
    Option(("--int8-weight-bits",), "int8: Conv2D weights on unsigned inputs in 7 or 8 bits "
           "(default: 8 where this CPU has VNNI, else 7; 7 makes a graph that is right on CPUs "
           "without VNNI too)", keyword="int8_weight_bits", setting="int8_weight_bits",
           type=int, choices=(7, 8)),
    Option(("--images",), f"without --data: verify on N invented inputs (default: "
           f"{DEFAULT_IMAGES}); int8 is then timed, never the result", keyword="images",
           setting="images", type=count),
    Option(DATA.flags + ("--image-dir",), DATA.help, keyword=DATA.keyword,
           setting=DATA.setting, metavar=DATA.metavar, dest="data"),
    Option(CALIBRATION_DATA.flags + ("--calibration-dir",), CALIBRATION_DATA.help,
           keyword=CALIBRATION_DATA.keyword, setting=CALIBRATION_DATA.setting,
           metavar="PATH", dest="calibration_data"),
    VERIFY_SAMPLES, CALIBRATION_SAMPLES, OUTPUT_KIND, GATE, MAX_ACCURACY_DROP,
    MAX_MAE_INCREASE,
    Option(("--preprocess",), "preprocessing mode or model family (tf, caffe, torch, none, "
           "xception, resnet50, ...); default: the model family's", keyword="preprocess",
           setting="preprocess", metavar="NAME"),
    Option(("--runs",), "timed runs per variant (default: the number of images)",
           keyword="runs", setting="runs", type=count),
    Option(("--threads",), "intra-op threads", keyword="threads", setting="threads",
           type=count),
    Option(("--cpus",), "pin to these CPUs, e.g. 0,1 or 0-3", keyword="cpus", setting="cpus",
           metavar="LIST"),
    Option(("--tolerance",), "fp32 gate: max relative difference from Keras (default: "
           "%(default)g)", keyword="tolerance", setting="tolerance", default=1e-4,
           type=positive),
    Option(("--unsafe",), "allow Keras files that run stored Python code (Lambda layers)",
           keyword="unsafe", setting="unsafe", action="store_true"),
    Option(("--allow-io-ops",), "run graphs that hold file-system, process or Python-calling "
           "ops", keyword="allow_io_ops", setting="allow_io_ops", action="store_true"),
    Option(("--no-progress",), "no progress display", action="store_true"),
)


def names(text):
    """A comma-separated list as a list of names (None for an empty one: the default)."""
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def counts(text):
    """A comma-separated list of whole numbers >= 1 (None for an empty one)."""
    return [count(v) for v in names(text)] if text else None


def shares(text):
    """A comma-separated list of shares in (0, 1] (None for an empty one)."""
    if not text:
        return None
    values = [positive(v) for v in names(text)]
    for value in values:
        if value > 1:
            raise argparse.ArgumentTypeError(f"each must be a share in (0, 1], got {value:g}")
    return values


# The data flags as tune takes them (its x and calibration keywords).
TUNE_DATA = (
    replace(DATA, keyword="x"),
    replace(CALIBRATION_DATA, keyword="calibration"),
    VERIFY_SAMPLES, CALIBRATION_SAMPLES, OUTPUT_KIND, GATE, MAX_ACCURACY_DROP,
    MAX_MAE_INCREASE,
)

TUNE = (
    *TUNE_DATA,
    Option(("--trials",), "trial budget (default %(default)s)", keyword="n_trials", default=24,
           type=count, metavar="N"),
    Option(("--recipes",), "comma-separated recipe names (default all)", keyword="recipes",
           default="", convert=names, metavar="A,B"),
    Option(("--precisions",), "comma-separated: " + ", ".join(
        ("fp32", "bf16", "bf16-grappler", "int8-weights", "int8",
         "int8@DB (int8 whose layers below DB of SQNR stay float)", "int8-tf")),
           keyword="precisions", default="", convert=names, metavar="A,B"),
    Option(("--threads",), "comma-separated intra-op thread counts (default 1 and all cores)",
           keyword="threads", default="", convert=counts, metavar="N,M"),
    Option(("--batch", "--batch-size"), "examples per timed run (default %(default)s)",
           keyword="batch_size", default=1, type=count, metavar="N", dest="batch_size"),
    Option(("--limit",), "use only the first N examples of --data (default: all)",
           keyword="limit", default=None, type=count, metavar="N",
           convert=lambda v: v or None),
    Option(("-o", "--out"), "output folder (default %(default)s)", default="tune-out"),
    Option(("--seed",), "the sampler's and the split's seed (default %(default)s)",
           keyword="seed", default=0, type=int),
)

#: prune's goal: exactly one of these (an exclusive group).
PRUNE_GOAL = (
    Option(("--target-macs",), "keep this share of the MACs, 0 < R < 1 (no search)",
           keyword="target_macs", type=positive, metavar="R"),
    Option(("--max-accuracy-drop",), "search per-group ratios for the lowest latency within "
           "this loss, in points", keyword="max_accuracy_drop", type=non_negative,
           metavar="POINTS"),
)

PRUNE = (
    replace(DATA, keyword=None),
    replace(OUTPUT_KIND, keyword="output_kind"),
    MAX_MAE_INCREASE,
    Option(("--preprocess",), "preprocessing of --data images (tf, caffe, torch, none; "
           "default none: pixels 0..255)", default="none", metavar="NAME"),
    Option(("-o", "--out"), "output folder (default %(default)s)", default="prune-out"),
    Option(("--method",), "channels: remove channels; lowrank: factorise Dense and Conv2D "
           "layers (SVD, Tucker-2) where the timer measures the whole model faster; both: "
           "channels, then lowrank (default %(default)s)", keyword="method",
           default="channels", choices=("channels", "lowrank", "both")),
    Option(("--batch",), "with --method lowrank/both: the batch at which each factorisation "
           "must be measurably faster (default %(default)s)", keyword="batch", default=1,
           type=count, metavar="N"),
    Option(("--criterion",), "channel importance (default %(default)s)", keyword="criterion",
           default="l2", choices=("l2", "fpgm", "taylor")),
    Option(("--epochs",), "fine-tuning epochs (default %(default)s)", keyword="epochs",
           default=10, type=count, metavar="N"),
    Option(("--seconds",), "fine-tuning time budget", keyword="seconds", type=positive,
           metavar="S"),
    Option(("--temperature",), "distillation temperature (default %(default)s)",
           keyword="temperature", default=4.0, type=positive),
    Option(("--alpha",), "weight of the distillation loss against the hard labels (default "
           "%(default)s)", keyword="alpha", default=0.7, type=non_negative),
    Option(("--trials",), "search trials (default %(default)s)", keyword="n_trials",
           default=12, type=count, metavar="N"),
    Option(("--trial-epochs",), "fine-tuning epochs of each candidate (a search trial, a "
           "low-rank level) before it is scored; short trials misjudge the aggressive ones "
           "(default %(default)s)", keyword="trial_epochs", default=1, type=count, metavar="N"),
    Option(("--energies",), "with --method lowrank/both: the candidate levels, shares of each "
           "layer's spectral energy kept (default 0.5,0.7,0.8,0.9,0.95,0.99; trained "
           "transformers' flat spectra need lower ones, such as 0.2,0.3,0.4)",
           keyword="energies", default="", convert=shares, metavar="E,F"),
    Option(("--seed",), "the channel choice's, the search's and the split's seed (default "
           "%(default)s)", keyword="seed", default=0, type=int),
    Option(("--unsafe",), "allow Lambda layers that carry Python code", keyword="unsafe",
           action="store_true"),
    Option(("--int8",), "make the pruned model int8-ready: score its post-training int8 graph "
           "held out and, when that loses more than --int8-max-drop points, fine-tune it "
           "through fake quantization", keyword="int8", action="store_true"),
    Option(("--int8-max-drop",), "with --int8: the int8 loss allowed before quantization-aware "
           "fine-tuning (default %(default)s)", keyword="int8_max_drop", default=0.5,
           type=non_negative, metavar="POINTS"),
    Option(("--qat-epochs",), "with --int8: quantization-aware fine-tuning epochs (default "
           "%(default)s)", keyword="qat_epochs", default=3, type=count, metavar="N"),
)


def keywords(options, args, convert=None):
    """The driver's keywords from parsed arguments: each option's own `convert`, or
    convert {keyword: fn(value)} where the command knows more (the model, say)."""
    found = {}
    for option in options:
        if option.keyword:
            value = getattr(args, option.name)
            fn = (convert or {}).get(option.keyword) or option.convert or (lambda v: v)
            try:
                found[option.keyword] = fn(value)
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"{option.flag}: {exc}") from None
    return found


def add_options(parser, options, **overrides):
    """Adds each option; overrides {dest: {argparse keyword: value}} (required=True, say)."""
    for option in options:
        option.add_to(parser, **overrides.get(option.name, {}))


def command_line(options, config):
    """The flags that reproduce `config` (optimize's OptimizeConfig), in declaration order."""
    argv = []
    for option in options:
        if not option.setting:
            continue
        value = config
        for part in option.setting.split("."):
            value = (value or {}).get(part) if isinstance(value, dict) else getattr(value, part,
                                                                                    None)
        if option.setting == "input_shapes":
            value = _shape_flags(value)
        if _writable(value):
            argv += option.argv(value)
    return argv


def _writable(value):
    """Whether a value can go on a command line (a path, a number, text, or lists and dicts
    of them; not the arrays or models the API also takes)."""
    if isinstance(value, dict):
        return all(_writable(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_writable(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool, os.PathLike))


def _shape_flags(shapes):
    """--input-shape values from freeze()'s input_shapes (dims, or {name: dims})."""
    if not shapes:
        return None
    if isinstance(shapes, dict):
        return [f"{name}:{','.join(map(str, dims))}" for name, dims in shapes.items()]
    return [",".join(map(str, shapes))]
