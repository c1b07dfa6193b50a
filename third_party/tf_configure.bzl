"""Repository rule that describes the installed TensorFlow wheel and Python.

One interpreter call prints every fact as key=value; the rule symlinks the
wheel's headers and shared libraries into @local_config_tf and writes
build_defs.bzl with TF_VERSION and TF_COPTS. Nothing is downloaded.
PYTHON_BIN_PATH is declared in `environ`, so pointing it at another
interpreter (another TF) re-runs the rule instead of serving a stale cache.
"""

_PROBE = """
import importlib.util, sys, sysconfig, os
spec = importlib.util.find_spec("tensorflow")
if spec is None:
    sys.exit("tensorflow is not installed for " + sys.executable)
import tensorflow as tf
import pybind11
print("python_include=" + sysconfig.get_paths()["include"])
print("pybind11_include=" + pybind11.get_include())
print("tf_include=" + tf.sysconfig.get_include())
print("tf_lib=" + tf.sysconfig.get_lib())
print("tf_version=" + tf.__version__)
print("tf_cflags=" + " ".join(f for f in tf.sysconfig.get_compile_flags() if not f.startswith("-I")))
print("python=" + sys.executable)
"""

def _fail(msg):
    fail("\n[leangraph] " + msg + "\n")

def _tf_configure_impl(rctx):
    python = rctx.os.environ.get("PYTHON_BIN_PATH", "")
    if not python:
        found = rctx.which("python3")
        if found == None:
            _fail("no python3 on PATH; set PYTHON_BIN_PATH (see .bazelrc)")
        python = str(found)
    res = rctx.execute([python, "-c", _PROBE], environment = {"TF_CPP_MIN_LOG_LEVEL": "3"})
    if res.return_code != 0:
        _fail("could not describe TensorFlow with %s (install tensorflow-cpu==2.21.* and pybind11 into it):\n%s" % (python, res.stderr))
    facts = {}
    for line in res.stdout.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            facts[key] = value
    for key in ["python_include", "pybind11_include", "tf_include", "tf_lib", "tf_version", "tf_cflags"]:
        if key not in facts:
            _fail("the interpreter probe did not report '%s'; it printed:\n%s" % (key, res.stdout))

    rctx.symlink(facts["tf_include"], "tf_include")
    rctx.symlink(facts["python_include"], "python_include")
    rctx.symlink(facts["pybind11_include"], "pybind11_include")
    for lib in ["libtensorflow_framework.so.2", "libtensorflow_cc.so.2"]:
        rctx.symlink(facts["tf_lib"] + "/" + lib, "lib/" + lib)

    copts = [f for f in facts["tf_cflags"].split(" ") if f]
    rctx.file("build_defs.bzl", "\n".join([
        '"""Facts about the TensorFlow this workspace was configured against (generated)."""',
        "TF_VERSION = %r" % facts["tf_version"],
        "TF_COPTS = %r" % copts,
        "PYTHON_BIN = %r" % python,
        "",
    ]))
    rctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])

exports_files(["build_defs.bzl"])

cc_library(
    name = "tf_headers",
    hdrs = glob(["tf_include/**"], exclude = ["tf_include/**/*.py", "tf_include/**/*.pyc"]),
    includes = ["tf_include"],
)

# The wheel's shared libraries, linked (never copied into a wheel of ours).
cc_library(
    name = "tf_libs",
    srcs = ["lib/libtensorflow_framework.so.2", "lib/libtensorflow_cc.so.2"],
    deps = [":tf_headers"],
)

cc_library(
    name = "python_headers",
    hdrs = glob(["python_include/**/*.h"]),
    includes = ["python_include"],
)

cc_library(
    name = "pybind11",
    hdrs = glob(["pybind11_include/**/*.h"]),
    includes = ["pybind11_include"],
    deps = [":python_headers"],
)
""")

tf_configure = repository_rule(
    implementation = _tf_configure_impl,
    environ = ["PYTHON_BIN_PATH"],
    local = True,
)
