"""Propagation of a perturbation through the hidden state: the exact deviation,
the first-order (tangent-linear) model, and sweeps over every truncation rank."""
from rnnperturb.propagate.deviation import *  # noqa: F401,F403
from rnnperturb.propagate.rank_sweep import *  # noqa: F401,F403
