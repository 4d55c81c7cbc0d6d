r"""rnnperturb: perturbation theory for the recurrent weights of RNNs.

How far does the hidden state of a trained RNN move when its recurrent weights
are truncated to low rank, quantized, pruned or perturbed by noise, and what
does that do to its short-term memory? See ``DESIGN.md`` and the README.

After J. A. Cox, "Parameter Compression of Recurrent Neural Networks and
Degradation of Short-term Memory", arXiv:1612.00891.
"""
from __future__ import annotations

__version__ = "0.1.0"

# --- model: cells, I/O, tasks
from rnnperturb.cells import ElmanRNN, MGRU, GRU, LSTM, Cell, CELL_TYPES, random_cell  # noqa: F401
from rnnperturb.cells import Stacked, random_stacked  # noqa: F401
from rnnperturb.io import save, load, load_with_metadata  # noqa: F401
from rnnperturb.io import from_torch_state_dict, load_torch  # noqa: F401
from rnnperturb.io import from_torch, to_torch, TorchLayout  # noqa: F401
from rnnperturb.report.progress import progress  # noqa: F401
from rnnperturb import tasks  # noqa: F401
from rnnperturb.tasks import metrics  # noqa: F401

# --- perturbation: low rank, elementwise, cost
from rnnperturb.perturb import (truncate_svd, truncation_weights, weighted_low_rank,  # noqa: F401
                                forcing_moments, propagation_weights)
from rnnperturb.perturb import quantize, prune, weight_noise  # noqa: F401
from rnnperturb.perturb import compression_cost, factors, CompressionCost, MatrixCost  # noqa: F401

# --- propagation: deviation, first order, rank sweeps
from rnnperturb.propagate import deviation, first_order, delta_recurrent  # noqa: F401
from rnnperturb.propagate import rank_sweep, RankSweep  # noqa: F401

# --- bounds: certified trajectory bound, global bound, certified recall
from rnnperturb.bounds import certified_bound  # noqa: F401
from rnnperturb.verified import spectral_norm_upper, taylor_remainder_max  # noqa: F401
from rnnperturb.bounds import global_bound, simple_contraction_bound, GlobalBound  # noqa: F401
from rnnperturb.bounds import (certified_recall, certified_safe_rank, CertifiedRecall,  # noqa: F401
                               SafeRank)

# --- certificates over sets of perturbations
from rnnperturb.perturb import sets  # noqa: F401
from rnnperturb.bounds.set_bound import set_bound, set_attack  # noqa: F401
from rnnperturb.stats.noise_bound import noise_bound  # noqa: F401
from rnnperturb.bounds.set_recall import (GaussianNoise, Tolerance, certified_set_recall,  # noqa: F401
                                          certified_noise_recall, certified_tolerance)

# --- statistics: random perturbations, coherence, memory
from rnnperturb.stats import noise_response, monte_carlo_noise  # noqa: F401
from rnnperturb.stats import (coherence_ratio, fixed_coherence, trajectory_coherence,  # noqa: F401
                              coherence_time, predicted_coherence, scalar_response)
from rnnperturb.stats import (linear_memory, memory_capacity, fisher_memory_curve,  # noqa: F401
                              delay_linearisation)
from rnnperturb.stats import noise, coherence, memory  # noqa: F401

# --- verified numerics; the sympy layer is imported on first use (rp.symbolic), so that
# the command line and numeric users do not pay sympy's import time
from rnnperturb import verified  # noqa: F401

# --- reports: rank selection
from rnnperturb.report import analyze_ranks, recommend_rank, default_inputs  # noqa: F401
from rnnperturb.report.allocation import allocate_ranks, Allocation  # noqa: F401


def __getattr__(name):
    if name == "symbolic":
        import importlib
        return importlib.import_module("rnnperturb.symbolic")
    raise AttributeError(f"module 'rnnperturb' has no attribute {name!r}")
