# Every target does its own set-up on a fresh Debian 12 machine (as root):
# bazel-bootstrap from apt when bazel is missing, a .venv with pinned packages.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHON_BIN_PATH := $(abspath $(PY))
export TF_CPP_MIN_LOG_LEVEL ?= 2
# TF's oneDNN notice on every import is noise in test logs.
export TF_ENABLE_ONEDNN_OPTS ?= 1

.PHONY: setup build dev test test-fast test-native test-python demo demo-data clean wheel test-wheel postgres

$(STAMP): requirements.txt requirements-nodeps.txt
	@command -v bazel >/dev/null || { apt-get update -q && apt-get install -y -q bazel-bootstrap; }
	@test -x $(PY) || python3 -m venv $(VENV) || { apt-get install -y -q python3-venv python3-dev && python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

setup: $(STAMP)

# The wheel build reads the installed TensorFlow, hence --no-build-isolation.
build: setup
	$(PY) -m pip install -q --no-build-isolation --no-deps --force-reinstall .

# In-tree build for quick iteration: PYTHONPATH=python $(PY) -m pytest tests/...
dev: setup
	bazel build //native:_native.so //native:build_info
	install -m 755 bazel-bin/native/_native.so python/leangraph/_native.so
	install -m 644 bazel-bin/native/_build_info.py python/leangraph/_build_info.py

test-native: setup
	bazel test //native/...

# The shared-study tests start (and stop) a PostgreSQL server of their own; this
# brings Debian's server binaries (initdb, pg_ctl) when they are missing.
postgres:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q postgresql; }

# Tests import the installed package, never the source tree.
test-python: build postgres
	cd tests && ../$(PY) -m pytest -c ../pyproject.toml --rootdir=.. -q

test: test-native test-python

# The quick loop while editing: the Python tests not marked slow, on the source tree
# (make dev's in-tree build), no C++ tests. About 2.5 minutes of CPU, so under 3 minutes
# on 2 idle cores; mark a new test @pytest.mark.slow when it takes seconds. make test runs all.
test-fast: dev postgres
	cd tests && PYTHONPATH=../python ../$(PY) -m pytest -c ../pyproject.toml --rootdir=.. -q -m "not slow"

# The default model (Keras Xception, weights=None, 299x299); 20 inputs and 30 timed runs
# per variant keep it to a few minutes on 2 cores. Results land in ./leangraph-demo.
demo: build
	$(VENV)/bin/leangraph optimize -o leangraph-demo --images 20 --runs 30

# The same on real data: a digits classifier trained here on scikit-learn's bundled digits
# (cached), optimized with its held-out images as --data; int8 is calibrated on one part of
# them and verified on the rest. Results land in ./leangraph-demo-data/out.
demo-data: build
	$(PY) -m leangraph.reference_model leangraph-demo-data
	$(VENV)/bin/leangraph optimize leangraph-demo-data/model.keras --data \
		leangraph-demo-data/digits.npz -o leangraph-demo-data/out --runs 30

VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' python/leangraph/_version.py)
# What this Debian 12 toolchain's output needs (glibc 2.34, GLIBCXX_3.4.29);
# auditwheel refuses the repair if the binaries need more.
WHEEL_PLAT ?= manylinux_2_34_x86_64
WHEEL = dist/leangraph-$(VERSION)-*-$(WHEEL_PLAT).whl

# dist/: a manylinux wheel and an sdist. TF's libraries stay out of the wheel:
# they come from the tensorflow or tensorflow-cpu the user installs.
wheel: setup
	rm -rf build/wheel-raw $(WHEEL) dist/leangraph-$(VERSION).tar.gz
	$(PY) -m pip wheel -q --no-build-isolation --no-deps -w build/wheel-raw .
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair --plat $(WHEEL_PLAT) \
	  --exclude libtensorflow_framework.so.2 --exclude libtensorflow_cc.so.2 \
	  -w dist build/wheel-raw/leangraph-$(VERSION)-*.whl
	$(PY) packaging/check_wheel.py $(WHEEL) $(WHEEL_PLAT)
	$(PY) -m build --sdist --no-isolation --outdir dist .

# Fresh venvs as a user would make them: the wheel beside tensorflow, beside
# tensorflow-cpu, and with no extras at all.
test-wheel: wheel
	packaging/test_wheel.sh $(WHEEL)

clean:
	bazel clean
	rm -rf build dist python/leangraph/_native.so python/leangraph/_build_info.py
