"""The run machinery: flags and RunConfig, the data-set registry, the one runner for train / evaluate /
resume, training, calibration, drawing, distributed set-up, signals, the conformance command."""
