"""Build macros for leangraph's native code."""

load("@local_config_tf//:build_defs.bzl", "TF_COPTS", "TF_VERSION")

def pybind_extension(name, srcs, deps = [], **kwargs):
    """A Python extension module `name`.so linked against the TF wheel.

    The rpath points at the TF wheel as installed beside leangraph in
    site-packages ($ORIGIN/../tensorflow), so an installed leangraph uses the
    user's TensorFlow and never carries a copy of it.
    """
    native.cc_binary(
        name = name + ".so",
        srcs = srcs,
        copts = TF_COPTS + ["-fexceptions", "-fvisibility=hidden"],
        local_defines = ["LEANGRAPH_TF_VERSION=\\\"%s\\\"" % TF_VERSION],
        linkshared = 1,
        linkopts = ["-Wl,-rpath,$$ORIGIN/../tensorflow"],
        deps = deps + ["@local_config_tf//:pybind11"],
        **kwargs
    )
