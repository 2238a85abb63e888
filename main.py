"""Human3.6M: train D3DP, or evaluate a checkpoint (ours or the authors').

The code lives in common/cli/h36m.py (installed: `d3dp-train, d3dp-evaluate`); `python main.py --help` lists the flags.
"""
import sys

from common.cli.h36m import main

if __name__ == "__main__":
    sys.exit(main())
