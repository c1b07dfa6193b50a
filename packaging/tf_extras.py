"""scikit-build-core metadata provider: the `cpu` and `tensorflow` extras, from the build's TF.

The extension is compiled against the TensorFlow installed where it is built, so
the extras name that release's major.minor rather than a series written by hand.
An sdist marks them dynamic: a wheel built from it names the builder's TF.
"""

from importlib import metadata

# extra -> the distribution it installs; both provide the same `tensorflow` package.
EXTRAS = {"cpu": "tensorflow-cpu", "tensorflow": "tensorflow"}
_OTHERS = ("tensorflow-intel", "tf-nightly", "tf-nightly-cpu")


def build_tf_version():
    for name in (*EXTRAS.values(), *_OTHERS):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    raise RuntimeError(
        "building leangraph needs the TensorFlow it will be bound to, installed first in "
        "this environment (pip install tensorflow-cpu or tensorflow), and then "
        "pip install --no-build-isolation"
    )


def series_pins(version):
    parts = version.split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        raise RuntimeError(f"cannot read major.minor from the installed TensorFlow {version!r}")
    series = f"{parts[0]}.{parts[1]}"
    return {extra: [f"{distribution}=={series}.*"] for extra, distribution in EXTRAS.items()}


def dynamic_metadata(settings, project):
    if settings:
        raise RuntimeError(f"tf_extras takes no settings, got {sorted(settings)}")
    return {"optional-dependencies": series_pins(build_tf_version())}


def dynamic_wheel(settings):
    return {"optional-dependencies": True}
