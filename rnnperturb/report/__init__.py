"""Reports: rank analysis and recommendation, the command line, progress."""
from rnnperturb.report.progress import progress  # noqa: F401
from rnnperturb.report.rank_analysis import *  # noqa: F401,F403
