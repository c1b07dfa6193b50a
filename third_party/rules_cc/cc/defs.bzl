"""Offline stand-in for @rules_cc: Bazel 4.2's built-in C++ rules, re-exported.

Bazel 4.2 references @rules_cc but the build is offline, so the real archive
cannot be fetched; the native rules are all this project uses.
"""

cc_binary = native.cc_binary
cc_library = native.cc_library
cc_test = native.cc_test
cc_import = native.cc_import
cc_proto_library = native.cc_proto_library
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
fdo_prefetch_hints = native.fdo_prefetch_hints
fdo_profile = native.fdo_profile
objc_library = native.objc_library
objc_import = native.objc_import
