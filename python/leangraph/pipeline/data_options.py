"""The data and gate options of optimize, tune and prune, added from their one declaration
(pipeline.options).

Every command that verifies or calibrates takes its examples the same way
(pipeline.data) and gates them with the same semantics (leangraph.metrics),
so their flags come from the same Option declarations.
"""

from leangraph.pipeline import options as O


def add_data_arguments(parser, *, required=False, calibration=True, gates=True, kinds=True,
                       samples=True, accuracy_drop=True):
    """Adds --data, --calibration-data, --verify-samples, --calibration-samples,
    --output-kind, --gate, --max-accuracy-drop and --max-mae-increase.

    calibration: declare --calibration-data. samples: declare --verify-samples and
    --calibration-samples (prune holds out its own share for fine-tuning).
    gates: declare --gate (optimize and tune gate every output against the original).
    kinds: declare --output-kind and --max-mae-increase (prune, which scores its one
    output against labels or the original, takes these without --gate).
    accuracy_drop: False where the command declares --max-accuracy-drop itself
    (prune, where it is one of two exclusive goals).
    """
    O.DATA.add_to(parser, required=required)
    chosen = ((calibration, O.CALIBRATION_DATA), (samples, O.VERIFY_SAMPLES),
              (samples, O.CALIBRATION_SAMPLES), (kinds, O.OUTPUT_KIND), (gates, O.GATE),
              (accuracy_drop, O.MAX_ACCURACY_DROP), (kinds, O.MAX_MAE_INCREASE))
    for wanted, option in chosen:
        if wanted:
            option.add_to(parser)
