"""Teaching mode: blinded calls, then the truth; a score per trainee; missed classes return.

A trainee calls the class of a blinded image, then sees the expert label, the model's call, the
mask and the heatmap. Each trainee has a score and a confusion matrix, and the classes they miss
come back more often.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cytoreview.errors import NotEnoughDataError
from cytoreview.storage.predictions import PredictionStore, TraineeAnswer
from cytoreview.storage.project import Project

#: How much more often a class comes back per unit of the trainee's miss rate on it.
MISS_BOOST = 3.0
#: Images answered right lately are shown less (their weight is multiplied by this).
RECENT_RIGHT_FACTOR = 0.2
#: How many of the newest answers count as "lately".
RECENT = 10


@dataclass(frozen=True)
class TraineeScore:
    """How a trainee is doing, for the score panel."""

    trainee: str
    n: int
    correct: int
    class_names: list[str]
    confusion: np.ndarray  # rows: truth, columns: the trainee's answer
    recall: dict[str, float | None]  # per true class; None when never shown

    @property
    def accuracy(self) -> float:
        """Share of right answers (0 before the first answer)."""
        return self.correct / self.n if self.n else 0.0


@dataclass(frozen=True)
class TeachFeedback:
    """What is revealed after an answer."""

    answer: TraineeAnswer
    correct: bool
    truth: str
    model_pred: str | None
    model_probabilities: dict[str, float]
    score: TraineeScore


def _labelled(project: Project) -> list[tuple[int, str]]:
    return [(r.id, r.class_label) for r in project.images() if r.class_label is not None]


def trainee_score(project: Project, trainee: str) -> TraineeScore:
    """The running score and confusion matrix of ``trainee``."""
    classes = list(project.scheme.classes)
    answers = PredictionStore(project).trainee_answers(trainee)
    matrix = np.zeros((len(classes), len(classes)), int)
    for a in answers:
        if a.truth in classes and a.answer in classes:
            matrix[classes.index(a.truth), classes.index(a.answer)] += 1
    shown = matrix.sum(axis=1)
    recall = {
        c: (float(matrix[i, i] / shown[i]) if shown[i] else None) for i, c in enumerate(classes)
    }
    correct = sum(1 for a in answers if a.correct)
    return TraineeScore(trainee, len(answers), correct, classes, matrix, recall)


def case_weights(project: Project, trainee: str) -> dict[int, float]:
    """Sampling weight of every labelled image for the trainee's next case.

    Each class gets the same total weight to start with (rare classes are not rarer in
    training), boosted by ``1 + MISS_BOOST * miss rate`` on that class; an image the trainee got
    right among the last answers is shown less.
    """
    cases = _labelled(project)
    if not cases:
        return {}
    score = trainee_score(project, trainee)
    per_class: dict[str, int] = {}
    for _, label in cases:
        per_class[label] = per_class.get(label, 0) + 1
    answers = PredictionStore(project).trainee_answers(trainee)
    recent_right = {a.image_id for a in answers[-RECENT:] if a.correct}
    weights = {}
    for image_id, label in cases:
        recall = score.recall.get(label)
        boost = 1.0 + MISS_BOOST * (1.0 - recall) if recall is not None else 1.0
        weight = boost / per_class[label]
        if image_id in recent_right:
            weight *= RECENT_RIGHT_FACTOR
        weights[image_id] = weight
    return weights


def next_case(
    project: Project, trainee: str, rng: np.random.Generator, *, exclude: int | None = None
) -> int:
    """Draw the next image to show blinded (never the one just shown, when there is a choice).

    Raises
    ------
    NotEnoughDataError
        If the project has no image with an expert class.
    """
    weights = case_weights(project, trainee)
    if exclude is not None and len(weights) > 1:
        weights.pop(exclude, None)
    if not weights:
        raise NotEnoughDataError(
            f"{project.root}: teaching needs images with an expert class; none is labelled"
        )
    ids = list(weights)
    p = np.array([weights[i] for i in ids], float)
    return int(ids[int(rng.choice(len(ids), p=p / p.sum()))])


def submit_answer(
    project: Project, trainee: str, image_id: int, answer: str, *, seconds: float | None = None
) -> TeachFeedback:
    """Store the trainee's call and return what to reveal."""
    record = project.image(image_id)
    if record.class_label is None:
        raise NotEnoughDataError(f"{record.name}: has no expert class to compare with")
    store = PredictionStore(project)
    pred = store.latest_predictions("bethesda").get(image_id)
    stored = store.add_trainee_answer(
        trainee, image_id, answer, record.class_label,
        model_pred=None if pred is None else pred.pred_class, seconds=seconds,
    )  # fmt: skip
    return TeachFeedback(
        answer=stored,
        correct=stored.correct,
        truth=stored.truth,
        model_pred=None if pred is None else pred.pred_class,
        model_probabilities={} if pred is None else dict(pred.probabilities),
        score=trainee_score(project, trainee),
    )
