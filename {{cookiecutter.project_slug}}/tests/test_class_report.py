"""test.py's per-class report: counts over the whole split that add up to it, an accuracy equal to
test.py's own, the same matrix from two processes as from one, and a PNG beside the JSON."""

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import test as test_script  # the project's test.py
import train
from tests.hostile import only_run, run_test, small_config, write_config
from tests.tiny import TINY
from tests.tiny.data_loaders import CLASSES
from utils.class_report import ConfusionMatrix, class_report, format_class_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> Path:
    """One short epoch at a low learning rate: a model that still gets some test samples wrong."""
    folder = tmp_path_factory.mktemp("class_report")
    config = small_config(folder / "saved", epochs=1)
    config["optimizer"]["args"]["lr"] = 1e-4  # barely moves from its random start
    assert train.main(["-c", str(write_config(folder / "config.json", config))], modules=TINY) == 0
    return only_run(folder / "saved")


@pytest.fixture(scope="module")
def tested(short_run: Path) -> dict:
    """test.py's report (best.test.json) on the short run's best.pth."""
    assert test_script.main(["-r", str(short_run / "best.pth")], modules=TINY) == 0
    return json.loads((short_run / "best.test.json").read_text())


def test_the_counts_add_up_to_the_test_split(tested: dict) -> None:
    report = tested
    per_class = report["class_report"]
    counts = per_class["confusion_matrix"]["counts"]
    assert sum(map(sum, counts)) == report["samples"] == per_class["samples"] == 20, "every test sample once"
    assert [values["support"] for values in per_class["per_class"].values()] == [sum(row) for row in counts]
    assert list(per_class["per_class"]) == list(CLASSES), "named by the checkpoint's classes"


def test_its_accuracy_is_test_py_s(tested: dict) -> None:
    report = tested
    # test.py's accuracy is a mean of float32 batch means: equal up to float32 rounding.
    assert report["class_report"]["accuracy"] == pytest.approx(report["test_accuracy"], rel=1e-6)
    assert report["test_accuracy"] < 1, "some samples are misclassified, so the two could disagree"


def test_precision_and_recall_come_from_the_matrix(tested: dict) -> None:
    per_class = tested["class_report"]
    counts = torch.tensor(per_class["confusion_matrix"]["counts"])
    for index, values in enumerate(per_class["per_class"].values()):
        hits = counts[index, index].item()
        assert values["recall"] == pytest.approx(hits / max(counts[index].sum().item(), 1))
        assert values["precision"] == pytest.approx(hits / max(counts[:, index].sum().item(), 1))


def test_a_picture_is_written_beside_the_json(short_run: Path, tested: dict) -> None:
    pytest.importorskip("matplotlib")
    picture = short_run / "best.confusion.png"
    assert picture.read_bytes()[:8] == PNG_SIGNATURE


def test_without_matplotlib_the_log_says_why_there_is_no_picture(
    short_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    (short_run / "last.confusion.png").unlink(missing_ok=True)
    result = run_test(capsys, "-r", short_run / "last.pth")
    assert result.code == 0, result.err
    assert "No last.confusion.png: drawing the confusion matrix needs matplotlib" in result.err
    assert not (short_run / "last.confusion.png").exists()
    assert "class_report" in json.loads((short_run / "last.test.json").read_text()), "the JSON has it all the same"
    assert "macro F1" in result.out, "and the table is printed"


def test_undefined_precision_and_recall_are_zero() -> None:
    counts = torch.tensor([[3, 0, 1], [0, 0, 0], [2, 0, 4]])  # class 1: never present, never predicted
    report = class_report(counts, ["a", "b", "c"])
    assert report["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["per_class"]["a"]["precision"] == pytest.approx(3 / 5)
    assert report["per_class"]["c"]["recall"] == pytest.approx(4 / 6)
    assert report["accuracy"] == pytest.approx(7 / 10)
    assert report["macro_f1"] == pytest.approx((2 * 0.6 * 0.75 / 1.35 + 2 * 0.8 * (2 / 3) / (0.8 + 2 / 3)) / 2)
    assert format_class_report(report).splitlines()[0].split() == ["class", "precision", "recall", "f1", "support"]


def _count_share(rank: int, world: int, port: int, out: str) -> None:
    """One of two gloo processes: counts its share of a fixed batch (unequal shares, as evaluation has);
    rank 0 writes the sum."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        output, targets = fixed_batch()
        confusion = ConfusionMatrix(4, torch.device("cpu"))
        share = slice(0, 5) if rank == 0 else slice(5, None)
        confusion.update(output[share], targets[share])
        counts = confusion.counts()
        if rank == 0:
            torch.save(counts, out)
    finally:
        dist.destroy_process_group()


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(12, 4, generator=generator), torch.randint(0, 4, (12,), generator=generator)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_sum_their_counts(tmp_path: Path) -> None:
    output, targets = fixed_batch()
    alone = ConfusionMatrix(4, torch.device("cpu"))
    alone.update(output, targets)
    out = tmp_path / "counts.pt"
    mp.start_processes(_count_share, args=(2, free_port(), str(out)), nprocs=2, start_method="spawn")
    assert torch.equal(torch.load(out), alone.counts())
    assert alone.counts().sum() == 12
