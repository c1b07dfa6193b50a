"""Held-out accuracy of int8 against fp32 on trained models: the digits reference and the
three MNIST references (ResNet-, MobileNetV2- and DenseNet-style), each quantized with
leangraph.quantize after the `deploy` recipe, calibrated on 32 training images.

    .venv/bin/python bench/int8_accuracy.py [--calibration 32] [--method minmax]
"""

import argparse

import numpy as np


def rows(calibration, method):
    import leangraph
    from leangraph.prune.reference import reference
    from leangraph.reference_model import reference_model

    digits = reference_model()
    yield "digits (Xception layout)", digits.graph_def, digits.x_train, digits.x_test, digits.y_test
    for name in ("resnet", "mobilenet", "densenet"):
        ref = reference(name)
        frozen = leangraph.freeze(ref.load())
        yield f"MNIST {name}", frozen.graph_def, ref.x_train, ref.x_test, ref.y_test


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--method", default="minmax")
    args = parser.parse_args()

    import leangraph
    from leangraph import quantization

    print(f"{'model':<26} {'fp32':>8} {'int8':>8} {'drop':>7} {'agree':>7} {'MACs int8':>10} {'file':>6}")
    for name, graph, x_train, x_test, y_test in rows(args.calibration, args.method):
        deploy = leangraph.transform(graph, leangraph.recipe("deploy", graph))
        result = quantization.quantize(deploy, x_train[: args.calibration], method=args.method)
        fp32 = leangraph.evaluate(deploy, x_test, y_test)
        int8 = leangraph.evaluate(result.graph_def, x_test, y_test, reference=deploy)
        size = result.graph_def.ByteSize() / deploy.ByteSize()
        print(f"{name:<26} {100 * fp32.accuracy:7.2f}% {100 * int8.accuracy:7.2f}% "
              f"{100 * (fp32.accuracy - int8.accuracy):6.2f}  {100 * int8.top1_agreement:6.1f}% "
              f"{100 * result.int8_mac_share:9.1f}% {100 * size:5.1f}%")


if __name__ == "__main__":
    main()
