"""Draw one Human3.6M sequence: its hypotheses, J-Agg pose and errors per iteration.

The code lives in common/cli/draw.py (installed: `d3dp-draw`); `python main_draw.py --help` lists the flags.
"""
import sys

from common.cli.draw import main

if __name__ == "__main__":
    sys.exit(main())
