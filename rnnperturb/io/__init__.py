"""Weights files: the project's ``.npz`` schema and PyTorch state_dicts."""
from rnnperturb.io.schema import *  # noqa: F401,F403
from rnnperturb.io.pytorch import *  # noqa: F401,F403
