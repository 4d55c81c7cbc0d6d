"""Cells: the protocol every cell follows, the registry, one module per cell."""
from rnnperturb.cells.protocol import *  # noqa: F401,F403
from rnnperturb.cells.random import random_cell, scale_to_spectral_norm  # noqa: F401
