"""Training and scoring from solver files: the solver's nets, the loop, snapshots, logs."""
from .log import Log, fmt  # noqa: F401
from .nets import read_solver  # noqa: F401
from .scoring import score  # noqa: F401
from .trainer import Trainer  # noqa: F401
