r"""rnnperturb: perturbation theory for the recurrent weights of RNNs.

How far does the hidden state of a trained RNN move when its recurrent weights
are truncated to low rank, quantized, pruned or perturbed by noise, and what
does that do to its short-term memory? See ``DESIGN.md`` and the README.

After J. A. Cox, "Parameter Compression of Recurrent Neural Networks and
Degradation of Short-term Memory", arXiv:1612.00891.
"""
from __future__ import annotations

__version__ = "0.1.0"

# --- foundation: cells, I/O, tasks
from .cells import ElmanRNN, MGRU, CELL_TYPES  # noqa: F401
from .io import save, load, load_with_metadata  # noqa: F401
from .progress import progress  # noqa: F401
from . import tasks  # noqa: F401

# --- deviation and first-order propagation
from .propagation import deviation, first_order  # noqa: F401
from . import metrics  # noqa: F401
from .nets import random_cell  # noqa: F401

# --- perturbations, cost and rank sweeps (issue 3)
from .truncation import (truncate_svd, truncation_weights, weighted_low_rank,  # noqa: F401
                         forcing_moments, propagation_weights)
from .perturbations import quantize, prune, weight_noise  # noqa: F401
from .cost import compression_cost, factors, CompressionCost, MatrixCost  # noqa: F401
from .sweep import rank_sweep, RankSweep  # noqa: F401
from .propagation import delta_recurrent  # noqa: F401

# --- certified and global bounds, certified recall (issue 4)
from .bounds import certified_bound  # noqa: F401
from .normbounds import spectral_norm_upper  # noqa: F401
from .remainder import taylor_remainder_max  # noqa: F401
from .global_bound import global_bound, simple_contraction_bound, GlobalBound  # noqa: F401
from .certify import certified_recall, certified_safe_rank, CertifiedRecall, SafeRank  # noqa: F401

# --- random perturbations, coherence, memory (issue 5)
from .noise import noise_response, monte_carlo_noise  # noqa: F401
from .coherence import (coherence_ratio, fixed_coherence, trajectory_coherence,  # noqa: F401
                        coherence_time, predicted_coherence, scalar_response)
from .memory import linear_memory, memory_capacity, fisher_memory_curve, delay_linearisation  # noqa: F401
from . import noise, coherence, memory  # noqa: F401

# --- symbolic and high precision (issue 5)
from . import symbolic, precision  # noqa: F401

# --- rank selection (issue 6)
from .analysis import analyze_ranks, recommend_rank, default_inputs  # noqa: F401
from .interop import from_torch_state_dict, load_torch  # noqa: F401
