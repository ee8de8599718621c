"""Tasks other than image classification, each brought as a user brings one: a BaseDataLoader, a model, a loss
and a metric, named in a config. Each trains, stops on SIGTERM part way through an epoch, resumes to the same
weights as a run that was never stopped, and is evaluated by test.py; predict.py writes its outputs on a split
or on files, and export.py exports it, whatever its inputs."""

import csv
import dataclasses
import json
import os
import signal
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import export
import predict
import train
from base.base_data_loader import BaseDataLoader, TensorSplit
from base.base_model import BaseModel
from base.base_trainer import BaseTrainer, BatchLoss
from base.image_data_loader import ImageDataLoader
from inference.exporters import FORMATS
from tests.hostile import _namespace, only_run, run_main, run_test, run_train, write_config
from tests.test_export import skip_without_packages
from tests.tiny import TINY, tiny_config
from tests.tiny.trainers import Trainer


class StopsOnForward(BaseModel):
    """Sends SIGTERM to this process on its ``stop_at``-th training forward pass (None: never)."""

    stop_at: ClassVar[int | None] = None
    forwards: ClassVar[int] = 0

    def count_forward(self) -> None:
        if self.training:
            StopsOnForward.forwards += 1
            if StopsOnForward.forwards == StopsOnForward.stop_at:
                os.kill(os.getpid(), signal.SIGTERM)


def features_and_targets(split: str, n: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    features = torch.randn(n, 6, generator=generator)
    return features, features @ torch.linspace(-1, 1, 6)[:, None] + 0.1 * torch.randn(n, 1, generator=generator)


class RegressionLoader(BaseDataLoader):
    """Float features and float targets, held in memory; predict.py's input files are tensors of features."""

    def load_split(self, split: str) -> TensorSplit:
        return TensorSplit(*features_and_targets(split))

    def read_inputs(self, path: Path) -> torch.Tensor:
        return torch.load(path, weights_only=True)


class RegressionDataset(Dataset):
    def __init__(self, split: str) -> None:
        self.features, self.targets = features_and_targets(split)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.targets[index]


class RegressionDatasetLoader(BaseDataLoader):
    """The same, read item by item from a Dataset."""

    def load_split(self, split: str) -> Dataset:
        return RegressionDataset(split)


class Linear(StopsOnForward):
    def __init__(self, outputs: int = 1) -> None:
        super().__init__()
        self.layer = nn.Linear(6, outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self.count_forward()
        return self.layer(features)


class TwoInputsLoader(BaseDataLoader):
    """Inputs as a dict of two tensors, which the model takes as keyword arguments; integer labels."""

    def load_split(self, split: str) -> TensorSplit:
        features, values = features_and_targets(split)
        return TensorSplit({"left": features[:, :3], "right": features[:, 3:]}, (values[:, 0] > 0).long())


class TwoInputsNet(StopsOnForward):
    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        self.count_forward()
        return self.left(left) + self.right(right)


class Sequences(Dataset):
    """Token sequences of 3 to 9 tokens; the label says whether token 1 occurs more often than token 2."""

    def __init__(self, split: str) -> None:
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        lengths = torch.randint(3, 10, (160,), generator=generator).tolist()
        self.items = [torch.randint(1, 3, (length,), generator=generator) for length in lengths]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        tokens = self.items[index]
        return tokens, int((tokens == 1).sum() > (tokens == 2).sum())


def pad_sequences(items: list[tuple[torch.Tensor, int]]) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """((tokens padded with 0, lengths), labels): a collate_fn, as torch's DataLoader takes it."""
    tokens = nn.utils.rnn.pad_sequence([tokens for tokens, _ in items], batch_first=True)
    lengths = torch.tensor([len(tokens) for tokens, _ in items])
    return (tokens, lengths), torch.tensor([label for _, label in items])


class SequenceLoader(BaseDataLoader):
    collate_fn = staticmethod(pad_sequences)

    def load_split(self, split: str) -> Dataset:
        return Sequences(split)


class BagOfTokens(StopsOnForward):
    def __init__(self) -> None:
        super().__init__()
        self.embedding, self.out = nn.Embedding(3, 4, padding_idx=0), nn.Linear(4, 2)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.count_forward()
        return self.out(self.embedding(tokens).sum(1) / lengths[:, None])


class MultiLabelLoader(BaseDataLoader):
    """Several yes/no labels per sample, as floats (for BCE with logits)."""

    def load_split(self, split: str) -> TensorSplit:
        features, _ = features_and_targets(split)
        return TensorSplit(features, (features[:, :3] > 0).float())


class MaskLoader(BaseDataLoader):
    """Dense segmentation: float images N x 1 x 8 x 8, and a class per pixel (N x 8 x 8: bright or not)."""

    def load_split(self, split: str) -> TensorSplit:
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        images = torch.rand(160, 1, 8, 8, generator=generator)
        return TensorSplit(images, (images[:, 0] > 0.5).long())


class PixelClassifier(StopsOnForward):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.count_forward()
        return self.conv(images)  # N x 2 x 8 x 8: a score per class and pixel


class LogitsAndPenalty(StopsOnForward):
    """Returns a dict, as many models do: the class scores and a term that its trainer adds to the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 2)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        self.count_forward()
        logits = self.layer(features)
        return {"logits": logits, "penalty": logits.pow(2).mean()}


class PenalisedTrainer(BaseTrainer):
    """A custom step, as a user writes one in trainer/trainer.py: two losses from a model's dict output."""

    def batch_loss(self, model: nn.Module, batch: Any) -> BatchLoss:
        features, label = batch
        out = model(features)
        return BatchLoss(self.criterion(out["logits"], label) + 0.01 * out["penalty"], out["logits"], label)


class RaisingTrainer(BaseTrainer):
    def batch_loss(self, model: nn.Module, batch: Any) -> BatchLoss:
        raise KeyError("logits")


class LossPerSampleTrainer(BaseTrainer):
    def batch_loss(self, model: nn.Module, batch: Any) -> BatchLoss:
        features, label = batch
        logits = model(features)["logits"]
        return BatchLoss(F.cross_entropy(logits, label, reduction="none"), logits, label)


class TripleLoader(BaseDataLoader):
    """Items of three parts, which only a custom batch_loss knows how to take apart."""

    def load_split(self, split: str) -> Dataset:
        features, values = features_and_targets(split)
        return list(zip(features, values, (values[:, 0] > 0).long(), strict=True))  # a list is a map-style Dataset


class SignLoader(BaseDataLoader):
    def load_split(self, split: str) -> TensorSplit:
        features, values = features_and_targets(split)
        return TensorSplit(features, (values[:, 0] > 0).long())


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output, target)


def bce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(output, target)


def mae(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output - target).abs().mean()


def label_accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((output > 0).float() == target).float().mean()


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, target)


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output.argmax(dim=1) == target).float().mean()


# Named as this module: the registry offers the functions defined in the module it looks at.
REGISTRY = dataclasses.replace(
    TINY,
    models=_namespace(Linear, TwoInputsNet, BagOfTokens, PixelClassifier, LogitsAndPenalty, name=__name__),
    data_loaders=_namespace(
        RegressionLoader,
        RegressionDatasetLoader,
        TwoInputsLoader,
        SequenceLoader,
        MultiLabelLoader,
        MaskLoader,
        SignLoader,
        TripleLoader,
        name=__name__,
    ),
    losses=_namespace(mse, bce, cross_entropy, name=__name__),
    metrics=_namespace(mae, label_accuracy, accuracy, name=__name__),
    trainers=_namespace(Trainer, PenalisedTrainer, RaisingTrainer, LossPerSampleTrainer, name=__name__),
)
# id: (model, its args, loader, loss, metrics)
TASKS = {
    "regression": ("Linear", {}, "RegressionLoader", "mse", ["mae"]),
    "regression-from-a-dataset": ("Linear", {}, "RegressionDatasetLoader", "mse", ["mae"]),
    "dict-inputs": ("TwoInputsNet", {}, "TwoInputsLoader", "cross_entropy", ["accuracy"]),
    "padded-sequences": ("BagOfTokens", {}, "SequenceLoader", "cross_entropy", ["accuracy"]),
    "multi-label": ("Linear", {"outputs": 3}, "MultiLabelLoader", "bce", ["label_accuracy"]),
    "segmentation": ("PixelClassifier", {}, "MaskLoader", "cross_entropy", ["accuracy"]),
    "custom-step": ("LogitsAndPenalty", {}, "SignLoader", "cross_entropy", ["accuracy"]),
}
TRAINERS = {"custom-step": "PenalisedTrainer"}  # trainer.type of the tasks that need their own step


def task_config(folder: Path, task: str) -> Path:
    model, model_args, loader, loss, metrics = TASKS[task]
    config = tiny_config(folder / "saved", epochs=2, type=TRAINERS.get(task, "Trainer"))
    config.update(arch={"type": model, "args": model_args}, loss=loss, metrics=metrics)
    config["data_loader"] = {"type": loader, "args": {"batch_size": 16, "validation_split": 0.2}}
    return write_config(folder / "config.json", config)


def weights(run: Path) -> dict[str, Any]:
    return torch.load(run / "last.pth", weights_only=True)["model"]


@pytest.mark.parametrize("task", list(TASKS))
def test_a_task_trains_resumes_exactly_after_sigterm_and_evaluates(
    task: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_train(capsys, "-c", task_config(tmp_path / "straight", task), modules=REGISTRY).code == 0
    straight = only_run(tmp_path / "straight" / "saved")
    # Step 3 of epoch 2: 128 training samples in batches of 16 make 8 steps an epoch.
    monkeypatch.setattr(StopsOnForward, "stop_at", 8 + 3)
    monkeypatch.setattr(StopsOnForward, "forwards", 0)
    stopped = run_train(capsys, "-c", task_config(tmp_path / "stopped", task), modules=REGISTRY)
    assert stopped.code == 128 + signal.SIGTERM, stopped.err
    monkeypatch.setattr(StopsOnForward, "stop_at", None)
    run = only_run(tmp_path / "stopped" / "saved")
    assert run_train(capsys, "-r", run, modules=REGISTRY).code == 0
    resumed, expected = weights(run), weights(straight)
    assert resumed.keys() == expected.keys()
    assert all(torch.equal(resumed[key], expected[key]) for key in expected), "bit-identical after the resume"

    evaluated = run_test(capsys, "-r", run, modules=REGISTRY)
    assert evaluated.code == 0, evaluated.err
    report = json.loads((run / "best.test.json").read_text(encoding="utf-8"))
    _, _, _, _, metrics = TASKS[task]
    assert {"test_loss", *(f"test_{name}" for name in metrics)} <= report.keys()
    assert report["samples"] == 160
    # Integer labels and a score per class (dict-inputs, padded-sequences) are not a classification until the
    # loader names its classes: no class names, no per-class report.
    assert "classes" not in report and "class_report" not in report


def test_the_tasks_learn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two epochs are enough for each to beat a model that did not learn (its first epoch's loss)."""
    for task in TASKS:
        assert run_train(capsys, "-c", task_config(tmp_path / task, task), modules=REGISTRY).code == 0
        run = only_run(tmp_path / task / "saved")
        first, last = (torch.load(run / name, weights_only=True)["metrics"] for name in ("epoch-1.pth", "last.pth"))
        assert last["val_loss"] < first["val_loss"], (task, first, last)


class OldImageLoader(BaseDataLoader):
    """A loader written for the BaseDataLoader that scaled and normalised images itself."""

    mean, std = (0.5,), (0.25,)

    def load_split(self, split: str) -> TensorSplit:
        return TensorSplit(torch.full((4, 1, 2, 2), 255, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))


def test_a_loader_that_sets_mean_and_std_on_a_base_data_loader_still_prepares_its_images() -> None:
    loader = OldImageLoader(validation_split=0)
    assert isinstance(loader, ImageDataLoader) and type(loader).__name__ == "OldImageLoader"
    inputs, _ = next(iter(loader.test_loader(torch.device("cpu"))))
    assert torch.equal(inputs, torch.full((4, 1, 2, 2), 2.0)), "(255 / 255 - 0.5) / 0.25"


# id: (trainer.type, model, data loader, what the one line says)
STEP_REFUSALS = {
    "step-raises": ("RaisingTrainer", "LogitsAndPenalty", "SignLoader", "RaisingTrainer.batch_loss failed on a"),
    "loss-per-sample": ("LossPerSampleTrainer", "LogitsAndPenalty", "SignLoader", "loss of a tensor of shape (16,)"),
    "dict-output": ("Trainer", "LogitsAndPenalty", "SignLoader", "arch: LogitsAndPenalty returns a dict, not a"),
    "three-part-batch": ("Trainer", "Linear", "TripleLoader", "float32 (16, 1), int64 (16,)), not (inputs, target)"),
    "unknown-trainer": ("NoSuchTrainer", "Linear", "RegressionLoader", "trainer.type: unknown name 'NoSuchTrainer'"),
}


@pytest.mark.parametrize("case", list(STEP_REFUSALS))
def test_a_step_that_does_not_fit_is_one_line_before_any_run_folder(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer_type, model, loader, message = STEP_REFUSALS[case]
    config = tiny_config(tmp_path / "saved", type=trainer_type)
    config.update(arch={"type": model, "args": {}}, loss="cross_entropy", metrics=["accuracy"])
    config["data_loader"] = {"type": loader, "args": {"batch_size": 16, "validation_split": 0.2}}
    result = run_train(capsys, "-c", write_config(tmp_path / "config.json", config), modules=REGISTRY)
    assert result.code == 2
    assert message in result.error_line()
    assert not (tmp_path / "saved").exists()


# The tasks whose inputs are a tensor of features, a dict of tensors and a tuple of padded tokens and lengths,
# with the names their ONNX exports give the inputs.
INPUT_NAMES = {"regression": ["inputs"], "dict-inputs": ["left", "right"], "padded-sequences": ["input_0", "input_1"]}


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory: pytest.TempPathFactory, logging_restored_after_module: None) -> dict[str, Path]:
    """A run of each task of INPUT_NAMES, trained once per module."""
    runs = {}
    for task in INPUT_NAMES:
        folder = tmp_path_factory.mktemp(task)
        assert train.main(["-c", str(task_config(folder, task))], modules=REGISTRY) == 0
        runs[task] = only_run(folder / "saved")
    return runs


def output_columns(rows: list[dict[str, str]]) -> torch.Tensor:
    return torch.tensor([[float(value) for key, value in row.items() if key.startswith("output_")] for row in rows])


@pytest.mark.parametrize("task", list(INPUT_NAMES))
def test_predict_writes_a_split_s_outputs_as_a_tensor_and_as_a_table(
    task: str, task_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("test.pt", "test.csv"):
        written = run_main(capsys, predict.main, "-r", task_runs[task], "--split", "test", "-o", tmp_path / name,
                           modules=REGISTRY)  # fmt: skip
        assert written.code == 0, written.err
    outputs = torch.load(tmp_path / "test.pt", weights_only=True)
    with (tmp_path / "test.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert outputs.dtype == torch.float32 and outputs.shape == (160, 2 if task != "regression" else 1)
    assert list(rows[0]) == ["input", "sample", *(f"output_{k}" for k in range(outputs.size(1)))], "no class names"
    assert [(row["input"], int(row["sample"])) for row in rows] == [("test", index) for index in range(160)]
    assert torch.equal(output_columns(rows), outputs), "written exactly"


def test_predict_reads_input_files_with_the_loader_s_read_inputs(
    task_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    features, _ = features_and_targets("test")
    torch.save(features[:10], tmp_path / "a.pt")
    torch.save(features[10:13], tmp_path / "b.pt")
    run = task_runs["regression"]
    on_the_split = ["-r", run, "--split", "test", "-o", tmp_path / "split.pt"]
    on_files = ["-r", run, tmp_path / "a.pt", tmp_path / "b.pt", "-o", tmp_path / "p.csv"]
    for arguments in (on_the_split, on_files):
        assert run_main(capsys, predict.main, *arguments, modules=REGISTRY).code == 0
    with (tmp_path / "p.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["input"] for row in rows] == [str(tmp_path / "a.pt")] * 10 + [str(tmp_path / "b.pt")] * 3
    split = torch.load(tmp_path / "split.pt", weights_only=True)
    assert torch.allclose(output_columns(rows), split[:13])


def test_input_files_for_a_loader_without_read_inputs_are_one_line(
    task_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rows.csv").write_text("left,right\n")
    refused = run_main(capsys, predict.main, "-r", task_runs["dict-inputs"], tmp_path / "rows.csv",
                       "-o", tmp_path / "p.csv", modules=REGISTRY)  # fmt: skip
    assert refused.code == 2
    assert "TwoInputsLoader defines no read_inputs(path)" in refused.error_line() and "--split test" in refused.err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("task", list(INPUT_NAMES))
def test_any_inputs_export_and_pass_the_check(
    task: str, name: str, task_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skip_without_packages(name)
    path = tmp_path / f"model{FORMATS[name].suffix}"
    exported = run_main(capsys, export.main, "-r", task_runs[task], "--format", name, "-o", path, modules=REGISTRY)
    assert exported.code == 0, exported.err
    assert "warning" not in exported.err.lower(), exported.err
    description = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
    assert description["input"]["names"] == INPUT_NAMES[task]
