"""Pictures of runs, drawn with matplotlib (an optional extra: pip install -e ".[plot]"): learning curves
from metrics.csv (plot.py) and the confusion matrix of a test report (test.py). Only matplotlib's
object API is used (no pyplot), so nothing opens a window or keeps global state."""

import math
from pathlib import Path
from typing import Any

from logger.metrics_csv import Row
from utils.errors import UsageError
from utils.util import atomic_write

INSTALL_HINT = 'pip install -e ".[plot]" (or pip install matplotlib)'
PANEL_WIDTH, PANEL_HEIGHT, MAX_COLUMNS = 5.0, 3.6, 3
PICTURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")  # by the file's suffix; matplotlib writes each


def matplotlib_figure() -> Any:
    """matplotlib's Figure class, or a UsageError saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(f"drawing needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    return Figure


def has_matplotlib() -> bool:
    try:
        matplotlib_figure()
    except UsageError:
        return False
    return True


def panel_names(histories: list[tuple[str, dict[int, Row]]]) -> list[str]:
    """One panel per metric, train and val together: loss first, then the others, the learning rate last."""
    names = dict.fromkeys(key.removeprefix("val_") for _, rows in histories for row in rows.values() for key in row)
    names.pop("seconds", None)
    return sorted(names, key=lambda name: {"loss": 0, "lr": 2}.get(name, 1))


def draw_curves(histories: list[tuple[str, dict[int, Row]]], out: Path) -> None:
    """Each (label, metrics.csv rows) as lines in one panel per metric: train solid, val dashed, one colour
    per run; written to ``out``, in the format its suffix names (PICTURE_FORMATS)."""
    figure_class = matplotlib_figure()
    names = panel_names(histories)
    columns = min(MAX_COLUMNS, len(names))
    rows = math.ceil(len(names) / columns)
    figure = figure_class(
        figsize=(PANEL_WIDTH * columns, PANEL_HEIGHT * rows + 0.4 * len(histories)), layout="constrained"
    )
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    for panel, name in zip(axes, names, strict=False):
        for index, (label, history) in enumerate(histories):
            _draw_lines(panel, name, history, f"C{index % 10}", label if len(histories) > 1 else "")
        _dress_panel(panel, name)
    for unused in axes[len(names) :]:
        unused.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")
    if len(histories) == 1:
        figure.suptitle(histories[0][0])
    save_picture(figure, out)


def _draw_lines(panel: Any, name: str, history: dict[int, Row], colour: str, label: str) -> None:
    for key, style, part in ((name, "-", "train"), (f"val_{name}", "--", "val")):
        points = [(epoch, row[key]) for epoch, row in sorted(history.items()) if key in row]
        if not points:
            continue
        epochs, values = zip(*points, strict=True)
        marker = "o" if len(points) <= 30 else None  # a few epochs read better as dots
        panel.plot(epochs, values, style, color=colour, marker=marker, markersize=3, label=f"{label} {part}".strip())


def _dress_panel(panel: Any, name: str) -> None:
    from matplotlib.ticker import MaxNLocator

    panel.set_title(name)
    panel.set_xlabel("epoch")
    panel.xaxis.set_major_locator(MaxNLocator(integer=True))
    panel.grid(alpha=0.3)
    values = [value for line in panel.get_lines() for value in line.get_ydata()]
    if name == "lr" and values and min(values) > 0 and max(values) / min(values) > 20:
        panel.set_yscale("log")  # warmups and one-cycle schedules span decades


def draw_confusion(counts: list[list[int]], classes: list[str], out: Path) -> None:
    """The confusion matrix (rows: true class, columns: predicted) as a PNG, with the counts written in."""
    figure_class = matplotlib_figure()
    size = min(4 + 0.45 * len(classes), 20)
    figure = figure_class(figsize=(size + 1.5, size), layout="constrained")
    panel = figure.subplots()
    image = panel.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=panel, shrink=0.8)
    ticks = range(len(classes))
    panel.set_xticks(ticks, classes, rotation=90 if max(map(len, classes)) > 3 else 0)
    panel.set_yticks(ticks, classes)
    panel.set_xlabel("predicted class")
    panel.set_ylabel("true class")
    if len(classes) <= 30:  # beyond that the numbers no longer fit their cells
        high = max(max(row) for row in counts) or 1
        for true, row in enumerate(counts):
            for predicted, count in enumerate(row):
                colour = "white" if count > high / 2 else "black"
                panel.text(predicted, true, str(count), ha="center", va="center", color=colour, fontsize="small")
    save_picture(figure, out)


def save_picture(figure: Any, out: Path) -> None:
    atomic_write(out, lambda handle: figure.savefig(handle, format=out.suffix[1:].lower(), dpi=100))
