#!/usr/bin/env bash
# Set-up and the two everyday jobs, on a fresh machine:
#   bash run.sh demo   # install into .venv, train + evaluate on the built-in synthetic set and real clips, lift a video clip
#   bash run.sh test   # install into .venv, then run the test suite (python -m pytest -q tests)
# Two installs, each in its own virtual environment (CI tests both):
#   full (default, .venv):        requirements.txt + OpenVINO + the video extras (mediapipe pins numpy 1.26)
#   core (--core, .venv-core):    requirements.txt alone (the latest numpy 2, no optional parts)
# Set D3DP_TORCH to install another torch build (e.g. a CUDA one) instead of the CPU 2.13.0.
# The real MPI-INF-3DHP test set, when present, is read from $D3DP_3DHP_TEST_DIR (tests skip without it).
set -euo pipefail
cd "$(dirname "$0")"
install=full venv=.venv
if [ "${1:-}" = --core ]; then install=core venv=.venv-core; shift; fi
job="${1:-}"
case "$job" in demo|test) ;; *) echo "usage: bash run.sh [--core] demo|test" >&2; exit 2 ;; esac
py="$venv/bin/python"

if [ ! -x "$py" ]; then
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "error: $(python3 --version 2>&1) found; torch 2.13 needs Python 3.10 or newer: put one first on PATH as python3" >&2
    exit 2
  fi
  python3 -m venv "$venv"
fi
# torch first and explicitly: an unpinned torch would pull a multi-GB CUDA build.
"$py" -m pip install -q --disable-pip-version-check "${D3DP_TORCH:-torch==2.13.0}"
"$py" -m pip install -q --disable-pip-version-check -r requirements.txt "setuptools>=64"
# The project itself, editable: `import d3dp` and the d3dp-* commands in the venv run this clone's code.
"$py" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
if [ "$install" = full ]; then
  # Optional, for faster sampling on CPUs; nothing needs it.
  "$py" -m pip install -q --disable-pip-version-check -r requirements-engine.txt \
    || echo "note: OpenVINO could not be installed; sampling runs in PyTorch (slower on CPUs, same results)" >&2
  # Optional, for lifting videos (main_in_the_wild.py --video): mediapipe and PyAV; nothing else needs them.
  if "$py" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))'; then
    "$py" -m pip install -q --disable-pip-version-check -r requirements-video.txt \
      || echo "note: mediapipe / PyAV could not be installed; videos need --keypoints-file (2D keypoints from another detector)" >&2
  else
    echo "note: mediapipe 0.10.21 has no wheel for $("$py" --version 2>&1) (3.9-3.12 only), so it is not installed;" \
         "videos need --keypoints-file (2D keypoints from another detector); installing PyAV alone for MP4" >&2
    "$py" -m pip install -q --disable-pip-version-check "$(grep '^av' requirements-video.txt)" \
      || echo "note: PyAV could not be installed; animations are written as GIF" >&2
  fi
fi
"$py" -c 'import sys, numpy, torch; print(f"{sys.argv[1]} install ({sys.argv[2]}): Python {sys.version.split()[0]}, numpy {numpy.__version__}, torch {torch.__version__}")' "$install" "$venv" >&2

if [ "$job" = demo ]; then
  "$py" main.py --demo "${@:2}"
  # ...then lift the real clip carried in the repository with the demo's model.
  clip=tests/fixtures/video/sports2d.mp4 out=checkpoint/demo/sports2d_3d
  if "$py" -c 'import mediapipe, av' 2>/dev/null; then
    echo
    "$py" main_in_the_wild.py --evaluate checkpoint/demo/best_epoch.bin --video "$clip" \
      -num_proposals 5 -sampling_timesteps 5 --output "$out.json" --output "$out.npz" --output "$out.bvh" --render
    echo "Demo video: $out.mp4 (the clip, its 2D keypoints and the 3D poses of the person followed longest);" \
         "every person's poses in $out.json, and one .npz and .bvh per person (${out}_person<id>)."
  else
    echo "note: mediapipe is not installed, so the demo does not lift the video clip $clip" >&2
  fi
else
  exec "$py" -m pytest -q tests "${@:2}"
fi
