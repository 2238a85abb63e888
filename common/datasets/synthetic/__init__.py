"""Synthetic Human3.6M (moved to a package; split into modules in the next step)."""
from .motion import *  # noqa: F401,F403
from .motion import _motion  # noqa: F401
