"""Task generators (memorization and the low-coherence tasks) and their metrics."""
from rnnperturb.tasks.generators import *  # noqa: F401,F403
from rnnperturb.tasks import metrics  # noqa: F401
