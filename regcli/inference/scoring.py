"""Score any predictor on a labelled split: loss, accuracy, per-class accuracy, confusion.

A predictor is any callable taking float32 images [B, 1, 28, 28] in [0, 1] and returning logits
[B, 10], both numpy arrays; the trainer passes its model, the inference commands pass a PyTorch
or onnxruntime backend. One scoring function for all of them is what makes their numbers
comparable. This module is plain numpy, so scoring an ONNX model never loads PyTorch.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from regcli.core.config import NUM_CLASSES, UNIT
from regcli.data.mnist import Split

Predictor = Callable[[np.ndarray], np.ndarray]
EVAL_BATCH = 1000  # images per inference batch when scoring a split


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 [B, 28, 28] -> float32 [B, 1, 28, 28] in [0, 1], the model's input."""
    return images[:, None].astype(np.float32) * np.float32(UNIT)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities, in float64 so that confident predictions keep their digits."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(1, keepdims=True))


@dataclass(frozen=True)
class Scores:
    loss: float  # mean cross-entropy over the split
    labels: np.ndarray  # int64 [N]
    predicted: np.ndarray  # int64 [N]
    confidence: np.ndarray  # float64 [N], softmax probability of the predicted class

    @property
    def total(self) -> int:
        return len(self.labels)

    @property
    def correct(self) -> int:
        return int((self.predicted == self.labels).sum())

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    @property
    def misclassified(self) -> np.ndarray:
        """Indices into the split of the wrongly predicted images, in order."""
        return np.flatnonzero(self.predicted != self.labels)

    @property
    def confusion(self) -> np.ndarray:
        """[true, predicted] counts."""
        flat = self.labels * NUM_CLASSES + self.predicted
        return np.bincount(flat, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)

    @property
    def per_class_accuracy(self) -> list[float]:
        confusion = self.confusion
        return (confusion.diagonal() / confusion.sum(1).clip(min=1)).tolist()


def score(predict: Predictor, split: Split, batch_size: int = EVAL_BATCH) -> Scores:
    """Run the predictor over the split in batches and score all its logits at once."""
    logits = np.concatenate(
        [
            predict(to_unit(split.images[start : start + batch_size]))
            for start in range(0, len(split), batch_size)
        ]
    )
    return score_logits(logits, split.labels)


def score_logits(logits: np.ndarray, labels: np.ndarray) -> Scores:
    """Scores of logits [N, 10] against labels [N] (the trainer scores a group's logits so)."""
    log_probs = log_softmax(logits)
    labels = np.asarray(labels, dtype=np.int64)
    return Scores(
        loss=float(-log_probs[np.arange(len(labels)), labels].mean()),
        labels=labels,
        predicted=log_probs.argmax(1),
        confidence=np.exp(log_probs.max(1)),
    )
