"""Bounds: the certified trajectory bound for one known perturbation, the
input-independent global bound, and certified recall."""
from rnnperturb.bounds.trajectory import *  # noqa: F401,F403
from rnnperturb.bounds.global_bound import *  # noqa: F401,F403
from rnnperturb.bounds.recall import *  # noqa: F401,F403
