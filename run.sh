#!/usr/bin/env bash
# Set-up and the two everyday jobs, on a fresh machine:
#   bash run.sh demo   # install into .venv, train + evaluate on the built-in synthetic set, lift a video clip
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
# Optional, for lifting videos (main_in_the_wild.py --video): mediapipe and PyAV; nothing else needs them.
if .venv/bin/python -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))'; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-video.txt \
    || echo "note: mediapipe / PyAV could not be installed; videos need --keypoints-file (2D keypoints from another detector)" >&2
else
  echo "note: mediapipe 0.10.21 has no wheel for $(.venv/bin/python --version 2>&1) (3.9-3.12 only), so it is not installed;" \
       "videos need --keypoints-file (2D keypoints from another detector); installing PyAV alone for MP4" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check "$(grep '^av' requirements-video.txt)" \
    || echo "note: PyAV could not be installed; animations are written as GIF" >&2
fi

if [ "$job" = demo ]; then
  .venv/bin/python main.py --demo "${@:2}"
  # ...then lift the real clip carried in the repository with the demo's model.
  clip=tests/fixtures/video/sports2d.mp4 out=checkpoint/demo/sports2d_3d
  if .venv/bin/python -c 'import mediapipe, av' 2>/dev/null; then
    echo
    .venv/bin/python main_in_the_wild.py --evaluate checkpoint/demo/best_epoch.bin --video "$clip" \
      -num_proposals 5 -sampling_timesteps 5 --output "$out.npz" --output "$out.bvh" --render
    echo "Demo video: $out.mp4 (the clip, its 2D keypoints and the 3D poses); poses in $out.npz and $out.bvh."
  else
    echo "note: mediapipe is not installed, so the demo does not lift the video clip $clip" >&2
  fi
else
  exec .venv/bin/python -m pytest -q tests "${@:2}"
fi
