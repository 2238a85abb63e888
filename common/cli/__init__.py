"""The command lines: each entry script (main*.py) and console script (d3dp-*) runs one of these."""
