"""Rebuild the clips of this folder from a checkout of DeepMimic (github.com/xbpeng/DeepMimic):

    python motion/deepmimic/make_clips.py PATH/TO/DeepMimic

Every MIT-licensed humanoid motion of its data/motions/ (not data/motions/sie/, CC BY-NC 4.0, nor
data/motions/amass/, AMASS's non-commercial licence; the _mirror copies are left out, as
training mirrors clips itself) is read as a DeepMimic file, turned into Human3.6M-17 joints,
placed on the floor, resampled to 50 fps and saved as whole millimetres."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.datasets.mocap.deepmimic import read_deepmimic  # noqa: E402
from common.datasets.mocap.motion import normalized  # noqa: E402
from common.datasets.mocap.positions import save_positions  # noqa: E402


def main(checkout: str) -> None:
    motions = Path(checkout) / "data" / "motions"
    files = sorted(p for p in motions.rglob("humanoid3d_*.txt")
                   if not {"sie", "amass"} & set(p.relative_to(motions).parts) and "_mirror" not in p.stem)
    out = Path(__file__).resolve().parent
    for f in files:
        m = normalized(read_deepmimic(f))
        name = m.name.removeprefix("humanoid3d_")
        save_positions(m, out / f"{name}.npz")
        print(f"{name}: {len(m.joints)} frames, {m.seconds:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1])
