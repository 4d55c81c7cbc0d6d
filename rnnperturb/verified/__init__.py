"""High-precision (mpmath) layer: interval arithmetic for the rigorous certified
bound (:mod:`.interval`) and high-precision propagation for ill-conditioned
cases (:mod:`.highprec`)."""
from .interval import *  # noqa: F401,F403
from .highprec import *  # noqa: F401,F403
