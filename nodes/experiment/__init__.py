"""The experiment protocol (phases, selection, peers, summary, plot, report), driven by an env: docs/experiment.md."""

from nodes.experiment.books import Books
from nodes.experiment.protocol import (
    EVAL_PHASES,
    SCRIPTED_PHASES,
    UNSHIELDED_PHASES,
    ArenaFacts,
    Experiment,
    Phase,
    Settings,
    Training,
)

__all__ = ["EVAL_PHASES", "SCRIPTED_PHASES", "UNSHIELDED_PHASES", "ArenaFacts", "Books", "Experiment", "Phase",
           "Settings", "Training"]
