"""Per-joint uncertainty: spread, radius and split-conformal factors, per-frame records, coverage reports."""
