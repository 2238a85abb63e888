"""In the wild: train on COCO-17 2D input, or lift one person's 2D keypoints (or a video) to 3D.

The code lives in common/cli/in_the_wild.py (installed: `d3dp-lift`); `python main_in_the_wild.py --help` lists the flags.
"""
import sys

from common.cli.in_the_wild import main

if __name__ == "__main__":
    sys.exit(main())
