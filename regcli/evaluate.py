"""Score any predictor on a labelled split: loss, accuracy, per-class accuracy, confusion.

A predictor is any callable taking float32 images [B, 1, 28, 28] in [0, 1] and returning logits
[B, 10]; the trainer passes its model, the inference commands pass a PyTorch or onnxruntime
backend. One scoring function for all of them is what makes their numbers comparable.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from regcli.augment import to_unit
from regcli.config import NUM_CLASSES
from regcli.data import Split

Predictor = Callable[[torch.Tensor], torch.Tensor]
EVAL_BATCH = 1000  # images per inference batch when scoring a split


@dataclass(frozen=True)
class Scores:
    loss: float  # mean cross-entropy over the split
    labels: torch.Tensor  # int64 [N], on the CPU
    predicted: torch.Tensor  # int64 [N]
    confidence: torch.Tensor  # float32 [N], softmax probability of the predicted class

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
    def misclassified(self) -> torch.Tensor:
        """Indices into the split of the wrongly predicted images, in order."""
        return (self.predicted != self.labels).nonzero().flatten()

    @property
    def confusion(self) -> torch.Tensor:
        """[true, predicted] counts."""
        flat = self.labels * NUM_CLASSES + self.predicted
        return torch.bincount(flat, minlength=NUM_CLASSES**2).view(NUM_CLASSES, NUM_CLASSES)

    @property
    def per_class_accuracy(self) -> list[float]:
        confusion = self.confusion
        return (confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()


def score(predict: Predictor, split: Split, batch_size: int = EVAL_BATCH) -> Scores:
    """Run the predictor over the split in batches; stays on the split's device until the end."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=split.labels.device)
    predicted, confidence = [], []
    for start in range(0, len(split), batch_size):
        labels = split.labels[start : start + batch_size]
        logits = predict(to_unit(split.images[start : start + batch_size])).to(labels.device)
        log_probs = F.log_softmax(logits.float(), dim=1)
        loss_sum += F.nll_loss(log_probs, labels, reduction="sum")
        best_log_prob, best = log_probs.max(1)
        predicted.append(best)
        confidence.append(best_log_prob.exp())
    return Scores(
        loss=float(loss_sum) / len(split),
        labels=split.labels.cpu(),
        predicted=torch.cat(predicted).cpu(),
        confidence=torch.cat(confidence).cpu(),
    )


def torch_predictor(model: torch.nn.Module) -> Predictor:
    """The model in eval mode, without autograd bookkeeping."""

    def predict(images: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.inference_mode():
            return model(images.to(next(model.parameters()).device))

    return predict
