"""Every learner a run can name, in one place (like core.policies.registry's EXTRACTORS).

To add a learner: its name in core.config.LearnerName, a class with training.learners.learner's
`Learner` methods, and one entry here.
"""

from __future__ import annotations

from core.config import LearnerName
from training.learners.learner import Learner
from training.learners.population import PopulationLearner
from training.learners.separate import SeparateLearner

LEARNERS: dict[LearnerName, Learner] = {
    learner.name: learner for learner in (SeparateLearner(), PopulationLearner())
}
