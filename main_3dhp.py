"""MPI-INF-3DHP: prepare the data, train D3DP, or evaluate a checkpoint and score it.

The code lives in common/cli/mpi_inf_3dhp.py (installed: `d3dp-3dhp`); `python main_3dhp.py --help` lists the flags.
"""
import sys

from common.cli.mpi_inf_3dhp import main

if __name__ == "__main__":
    sys.exit(main())
