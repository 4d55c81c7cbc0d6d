"""Statistics of random perturbations: noise response, temporal coherence and
its scalar laws, and linear memory (capacity, Fisher memory)."""
from rnnperturb.stats.noise import *  # noqa: F401,F403
from rnnperturb.stats.coherence import *  # noqa: F401,F403
from rnnperturb.stats.memory import *  # noqa: F401,F403
