"""Cells: the protocol every cell follows (:mod:`.protocol`), the array
namespaces its step is written over (:mod:`.namespace`), the registry
(:mod:`.registry`), and one module per cell (:mod:`.elman`, :mod:`.mgru`, :mod:`.gru`,
:mod:`.lstm`); stacked networks of any of them (:mod:`.stacked`, not a registered
name: a stack is built from its layers)."""
from rnnperturb.cells.namespace import FLOAT, sigmoid  # noqa: F401
from rnnperturb.cells.protocol import Cell  # noqa: F401
from rnnperturb.cells.registry import CELL_TYPES, cell_from_params, cell_type, register  # noqa: F401
from rnnperturb.cells.elman import ElmanRNN
from rnnperturb.cells.mgru import MGRU
from rnnperturb.cells.gru import GRU
from rnnperturb.cells.lstm import LSTM
from rnnperturb.cells.random import random_cell, scale_to_spectral_norm  # noqa: F401
from rnnperturb.cells.stacked import Stacked, random_stacked  # noqa: F401

register(ElmanRNN)
register(MGRU)
register(GRU)
register(LSTM)
