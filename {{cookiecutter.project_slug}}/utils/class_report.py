"""The per-class report of test.py: precision, recall, F1 and support of each class, and the confusion
matrix. These need the whole split, so they come from counts added up over every batch (on the device,
without a host sync per batch) and, under torchrun, over every process; never from per-batch averages."""

from typing import Any

import torch

from utils.dist import all_reduce


class ConfusionMatrix:
    """``counts[true class, predicted class]`` over everything ``update`` was given, by all processes.

    ``num_classes`` is the model's output width; every process makes its matrix before the first batch,
    so a process whose share of the split is empty still takes part in the sum."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self._counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)

    def update(self, output: torch.Tensor, targets: torch.Tensor) -> None:
        predicted = output.argmax(dim=1)
        cells = targets.to(torch.int64) * self.num_classes + predicted  # row-major index of each sample's cell
        self._counts.add_(torch.bincount(cells, minlength=self._counts.numel()))

    def counts(self) -> torch.Tensor:
        """The summed matrix on the CPU (under torchrun every process must call this: it adds up their shares)."""
        totals = all_reduce(self._counts.clone())
        return totals.reshape(self.num_classes, self.num_classes).cpu()


def class_report(counts: torch.Tensor, classes: list[str] | None) -> dict[str, Any]:
    """Accuracy, macro F1, each class's precision, recall, F1 and support, and the matrix itself (rows: the
    true class, columns: the predicted one). A class never predicted has precision 0, one never present
    recall 0 (as scikit-learn reports them); macro F1 averages over the classes present or predicted."""
    names = classes if classes is not None and len(classes) == len(counts) else [str(i) for i in range(len(counts))]
    hits, support, predicted = counts.diagonal().tolist(), counts.sum(dim=1).tolist(), counts.sum(dim=0).tolist()
    per_class = {}
    for name, hit, true_total, predicted_total in zip(names, hits, support, predicted, strict=True):
        precision = hit / predicted_total if predicted_total else 0.0
        recall = hit / true_total if true_total else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(true_total)}
    seen = [values["f1"] for values, s, p in zip(per_class.values(), support, predicted, strict=True) if s or p]
    total = int(counts.sum())
    return {
        "accuracy": sum(hits) / total if total else 0.0,
        "macro_f1": sum(seen) / len(seen) if seen else 0.0,
        "samples": total,
        "per_class": per_class,
        "confusion_matrix": {
            "rows": "true class",
            "columns": "predicted class",
            "classes": names,
            "counts": counts.tolist(),
        },
    }


def format_class_report(report: dict[str, Any]) -> str:
    """The per-class table test.py prints: one aligned line per class, then the macro F1."""
    width = max(len("class"), *(len(name) for name in report["per_class"]))
    lines = [f"{'class':<{width}}  precision  recall      f1  support"]
    for name, values in report["per_class"].items():
        precision, recall, f1 = values["precision"], values["recall"], values["f1"]
        lines.append(f"{name:<{width}}  {precision:9.4f}  {recall:6.4f}  {f1:6.4f}  {values['support']:7d}")
    lines.append(f"{'macro F1':<{width}}  {'':9}  {'':6}  {report['macro_f1']:6.4f}  {report['samples']:7d}")
    return "\n".join(lines)
