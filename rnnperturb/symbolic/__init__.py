"""Symbolic (sympy) cells, deviation recursions and sharp constants."""
from rnnperturb.symbolic.recursions import *  # noqa: F401,F403
