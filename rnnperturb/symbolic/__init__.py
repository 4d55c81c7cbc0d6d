"""Symbolic (sympy) cells, deviation recursions and sharp constants."""
from rnnperturb.symbolic.recursions import *  # noqa: F401,F403
from rnnperturb.symbolic.recursions import _NUMPY_MODULES  # noqa: F401
