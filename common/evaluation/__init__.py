"""Evaluation: scoring every group, the collectors of what it keeps, the tables, evaluation across
processes, the MPI-INF-3DHP scorer and export."""
