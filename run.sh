#!/usr/bin/env bash
# Set-up and the two everyday jobs, on a fresh machine:
#   bash run.sh demo   # install into .venv, then train + evaluate on the built-in synthetic set
#   bash run.sh test   # install into .venv, then run the test suite (python -m pytest -q tests)
# Set D3DP_TORCH to install another torch build (e.g. a CUDA one) instead of the CPU 2.13.0.
# The real MPI-INF-3DHP test set, when present, is read from $D3DP_3DHP_TEST_DIR (tests skip without it).
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-}"
case "$job" in demo|test) ;; *) echo "usage: bash run.sh demo|test" >&2; exit 2 ;; esac

if [ ! -x .venv/bin/python ]; then
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "error: $(python3 --version 2>&1) found; torch 2.13 needs Python 3.10 or newer: put one first on PATH as python3" >&2
    exit 2
  fi
  python3 -m venv .venv
fi
# torch first and explicitly: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check "${D3DP_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt "setuptools>=64"
# The project itself, editable: `import d3dp` and the d3dp-* commands in the venv run this clone's code.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
# Optional, for faster sampling on CPUs; nothing needs it.
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-engine.txt \
  || echo "note: OpenVINO could not be installed; sampling runs in PyTorch (slower on CPUs, same results)" >&2

if [ "$job" = demo ]; then
  exec .venv/bin/python main.py --demo "${@:2}"
else
  exec .venv/bin/python -m pytest -q tests "${@:2}"
fi
