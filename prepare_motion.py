"""Motion capture -> a training set in the Human3.6M file format.

The code lives in common/cli/motion_set.py (installed: `d3dp-motion-set`); `python prepare_motion.py --help` lists the flags.
"""
import sys

from common.cli.motion_set import main

if __name__ == "__main__":
    sys.exit(main())
