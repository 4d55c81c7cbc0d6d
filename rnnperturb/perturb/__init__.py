"""Perturbations of the recurrent matrices: low rank (plain and data-aware),
elementwise (quantization, pruning, noise), and their storage cost."""
from rnnperturb.perturb.low_rank import *  # noqa: F401,F403
from rnnperturb.perturb.elementwise import *  # noqa: F401,F403
from rnnperturb.perturb.cost import *  # noqa: F401,F403
