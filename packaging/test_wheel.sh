#!/usr/bin/env bash
# make test-wheel: the built wheel in fresh venvs, installed the way a user would.
#   1. beside `tensorflow` (the GPU-capable wheel), 2. beside `tensorflow-cpu`: one
#      TensorFlow distribution in `pip list`, `leangraph optimize` writes every
#      artifact, `leangraph-bench` times the result;
#   3. beside tensorflow-cpu but without the `tune` extra: `leangraph tune` names the
#      extra in one line;
#   4. the wheel alone (core dependencies only): no TensorFlow gets installed;
#      importing leangraph names the two TF extras, and so does `leangraph`, in one line.
# About 7 minutes on the shared 2-core machine (load 9), most of it pip unpacking TF.
# usage: test_wheel.sh dist/leangraph-*.whl
set -euo pipefail

[[ $# -eq 1 && -f $1 ]] || { echo "usage: $0 WHEEL" >&2; exit 2; }
wheel=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
tf_version=$(python3 - "$wheel" <<'EOF'
import sys, zipfile
info = zipfile.ZipFile(sys.argv[1]).read("leangraph/_build_info.py").decode()
scope = {}
exec(info, scope)
print(scope["TF_VERSION"])
EOF
)
work=$(mktemp -d /tmp/leangraph-test-wheel.XXXXXX)
# Deleting 3 GB of venvs takes a minute or two on a busy disk; nothing waits for it.
trap 'nohup rm -rf "$work" >/dev/null 2>&1 &' EXIT
export TF_CPP_MIN_LOG_LEVEL=2 PIP_DISABLE_PIP_VERSION_CHECK=1
start=$SECONDS

say() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - start)); }
fail() { echo "test_wheel: FAILED: $*" >&2; exit 1; }

new_venv() {
  python3 -m venv "$work/$1" || fail "python3 -m venv (apt-get install python3-venv?)"
}

pip_install() {
  local venv=$1; shift
  "$work/$venv/bin/pip" install -q "$@" > "$work/pip.log" 2>&1 ||
    { cat "$work/pip.log"; fail "$venv: pip install $*"; }
}

tf_distributions() {
  "$work/$1/bin/pip" list --format=json 2>/dev/null | python3 -c '
import json, sys
names = {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly", "tf-nightly-cpu"}
rows = json.load(sys.stdin)
print(" ".join(sorted(r["name"].lower().replace("_", "-") for r in rows
                      if r["name"].lower().replace("_", "-") in names)))'
}

with_tf() {
  local venv=$1 extra=$2 distribution=$3
  say "$venv: the wheel[$extra] beside $distribution==$tf_version"
  new_venv "$venv"
  pip_install "$venv" "$wheel[$extra]" "$distribution==$tf_version"
  local found
  found=$(tf_distributions "$venv")
  [[ $found == "$distribution" ]] || fail "$venv: TensorFlow distributions installed: '$found', want '$distribution' only"
  "$work/$venv/bin/pip" check >/dev/null || fail "$venv: pip check"
  echo "one TensorFlow distribution: $found"

  cd "$work/$venv"
  bin/python "$here/tiny_model.py" model.keras
  bin/leangraph optimize model.keras -o out --images 4 --runs 5 --no-progress > optimize.log 2>&1 ||
    { cat optimize.log; fail "$venv: leangraph optimize"; }
  for artifact in optimized.pb optimized_savedmodel/saved_model.pb report.md report.json latency.png; do
    [[ -s out/$artifact ]] || fail "$venv: leangraph optimize did not write $artifact"
  done
  echo "leangraph optimize wrote: $(cd out && echo *)"
  bin/leangraph-bench --graph out/optimized.pb --input image:1,32,32,3:float32 --runs 5 --warmup 2 \
    --json > bench.json 2> bench.log || { cat bench.log; fail "$venv: leangraph-bench"; }
  bin/python -c '
import json
report = json.load(open("bench.json"))
assert report["count"] == 5 and report["p50_ms"] > 0, report
print("leangraph-bench ran: %d runs, p50 %.3f ms" % (report["count"], report["p50_ms"]))' ||
    fail "$venv: leangraph-bench printed no JSON report"
  cd - >/dev/null
}

tune_without_extra() {
  local venv=$1
  say "$venv: leangraph tune without the tune extra"
  "$work/$venv/bin/python" -c "import optuna" 2>/dev/null && fail "$venv: optuna is installed"
  cd "$work/$venv"
  bin/python -c "import numpy as np; np.savez('data.npz', x=np.zeros((4, 32, 32, 3), np.float32))"
  local err rc=0
  err=$(bin/leangraph tune out/optimized.pb --data data.npz --out tune-out 2>&1 >/dev/null) || rc=$?
  [[ $rc -eq 1 ]] || { echo "$err"; fail "$venv: leangraph tune exited $rc, want 1"; }
  [[ $(wc -l <<<"$err") -eq 1 ]] || { echo "$err"; fail "$venv: leangraph tune printed more than one line"; }
  grep -q "pip install 'leangraph\[tune\]'" <<<"$err" || { echo "$err"; fail "$venv: the error does not name the extra"; }
  [[ ! -e tune-out ]] || fail "$venv: leangraph tune wrote tune-out/ before failing"
  echo "$err"
  cd - >/dev/null
}

core_only() {
  local venv=core
  say "$venv: the wheel alone (no extras)"
  new_venv "$venv"
  pip_install "$venv" "$wheel"
  [[ -z $(tf_distributions "$venv") ]] || fail "$venv: the wheel alone installed a TensorFlow"
  local err
  if err=$("$work/$venv/bin/python" -c "import leangraph" 2>&1); then
    fail "$venv: import leangraph succeeded without TensorFlow"
  fi
  grep -q "pip install 'leangraph\[cpu\]' (tensorflow-cpu) or 'leangraph\[tensorflow\]'" <<<"$err" ||
    { echo "$err"; fail "$venv: the no-TensorFlow error does not name the extras"; }
  echo "no TensorFlow installed; import leangraph: $(tail -n 1 <<<"$err")"
  local rc=0
  err=$("$work/$venv/bin/leangraph" tune model.pb --data data.npz 2>&1 >/dev/null) || rc=$?
  [[ $rc -eq 1 && $(wc -l <<<"$err") -eq 1 ]] || { echo "$err"; fail "$venv: leangraph without TF: exit $rc, want 1 and one line"; }
  grep -q "leangraph\[cpu\]" <<<"$err" || { echo "$err"; fail "$venv: leangraph without TF does not name the extras"; }
  echo "$err"
}

with_tf tensorflow tensorflow tensorflow
with_tf cpu cpu tensorflow-cpu
tune_without_extra cpu
core_only
say "test_wheel: all passed"
