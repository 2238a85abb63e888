"""Data sources: each turns files on disk into a list of common.datasets.base.Sequence."""
