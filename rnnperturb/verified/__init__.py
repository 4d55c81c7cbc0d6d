"""Verified numerics: floating-point linear algebra with rigorous rounding
bounds (:mod:`.linalg`), activation error bounds (:mod:`.activation`),
outward-rounded kernels of the global bound (:mod:`.outward`), interval
arithmetic (:mod:`.interval`) and high-precision propagation (:mod:`.highprec`)."""
from rnnperturb.verified.linalg import *  # noqa: F401,F403
from rnnperturb.verified.activation import *  # noqa: F401,F403
from rnnperturb.verified.outward import *  # noqa: F401,F403
from rnnperturb.verified.interval import *  # noqa: F401,F403
from rnnperturb.verified.highprec import *  # noqa: F401,F403
