"""Offline stand-in for @rules_java: Bazel 4.2's built-in Java rules, re-exported.

Nothing here builds Java; Bazel's own tool repositories merely load this file.
"""

java_binary = native.java_binary
java_library = native.java_library
java_import = native.java_import
java_test = native.java_test
java_plugin = native.java_plugin
java_toolchain = native.java_toolchain
java_runtime = native.java_runtime
java_package_configuration = native.java_package_configuration
