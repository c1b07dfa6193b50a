"""Checks a repaired leangraph wheel: its tag, and that TensorFlow's libraries stay outside it.

usage: check_wheel.py WHEEL PLATFORM   (e.g. manylinux_2_34_x86_64)

`auditwheel show` does not know about `repair --exclude`, so
its overall tag stays linux_x86_64 while TF's libraries are unresolved; what it
reports as the symbol-version tag (`sym_tag`) is the platform the wheel needs.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

# Provided by whichever TF distribution the user installed; never bundled.
TF_LIBRARIES = {"libtensorflow_cc.so.2", "libtensorflow_framework.so.2"}


def fail(message):
    sys.exit(f"check_wheel: {message}")


def main(argv):
    if len(argv) != 2:
        fail("usage: check_wheel.py WHEEL PLATFORM")
    wheel, platform = Path(argv[0]), argv[1]
    if not wheel.is_file():
        fail(f"no such wheel: {wheel}")
    auditwheel = Path(sys.executable).with_name("auditwheel")
    shown = subprocess.run([str(auditwheel), "show", "--json", str(wheel)],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        fail(f"auditwheel show failed: {shown.stderr.strip()}")
    report = json.loads(shown.stdout)
    if report["sym_tag"] != platform:
        fail(f"the wheel's symbols need {report['sym_tag']}, not {platform}")
    if not wheel.name.endswith(f"-{platform}.whl"):
        fail(f"{wheel.name} is not tagged {platform}")
    outside = set(report["external_libs"])
    if outside != TF_LIBRARIES:
        fail(f"libraries outside the manylinux policy: {sorted(outside)}; "
             f"only {sorted(TF_LIBRARIES)} may be")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    bundled = [n for n in names if ".libs/" in n or Path(n).name.startswith("libtensorflow")]
    if bundled:
        fail(f"the wheel bundles libraries: {bundled}")
    for needed in ("leangraph/_native.so", "leangraph/_build_info.py", "leangraph/bin/leangraph_bench"):
        if needed not in names:
            fail(f"the wheel lacks {needed}")
    glibc = sorted(v for v in report["versioned_symbols"].get("libc.so.6", []))
    cxx = sorted(v for v in report["versioned_symbols"].get("libstdc++.so.6", []) if "GLIBCXX" in v)
    newest = lambda versions: max(versions, key=lambda v: [int(p) for p in v.split("_")[1].split(".")])
    print(f"check_wheel: {wheel.name}: {platform} (newest symbols {newest(glibc)}, {newest(cxx)}); "
          f"{', '.join(sorted(TF_LIBRARIES))} come from the installed TensorFlow, not the wheel")


if __name__ == "__main__":
    main(sys.argv[1:])
