"""Tasks other than image classification, brought as a user brings one, each in its own copy of a default bake:
code added to model/model.py, model/loss.py, model/metric.py, data_loader/data_loaders.py (and for a step of
their own, trainer/trainer.py), named in the project's config.json. Each trains, stops on SIGTERM part way
through an epoch, resumes to the very weights of a run that was never stopped, is evaluated by test.py and
predicts on its test split. (The project's own suite runs without config.json, and with a user's model, loader
and trainer in place: tests/test_project_suite.py.)"""

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import describe, run_folders, run_project

# Prepended to the model file of every case: a training forward pass that signals its own process, as a
# scheduler's preemption would, at the STOP_AT-th step (counted over the run, not per epoch).
STOPPABLE = """
import os
import signal


class Stoppable(BaseModel):
    forwards = 0

    def count_forward(self) -> None:
        if self.training:
            Stoppable.forwards += 1
            if str(Stoppable.forwards) == os.environ.get("STOP_AT"):
                os.kill(os.getpid(), signal.SIGTERM)
"""

FEATURES = """
            def features_and_values(split: str) -> tuple[torch.Tensor, torch.Tensor]:
                generator = torch.Generator().manual_seed(0 if split == "train" else 1)
                features = torch.randn(160, 6, generator=generator)
                return features, features @ torch.linspace(-1, 1, 6)[:, None]

"""

LINEAR = """
            class Linear(Stoppable):
                def __init__(self, outputs: int = 1) -> None:
                    super().__init__()
                    self.layer = nn.Linear(6, outputs)

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    self.count_forward()
                    return self.layer(x)
"""

# id: {file: code appended to it} and the config's arch, data_loader type, loss, metrics and trainer.type
CASES = {
    "regression": {
        "model/model.py": LINEAR,
        "data_loader/data_loaders.py": FEATURES
        + """
            class TableLoader(BaseDataLoader):
                def load_split(self, split: str) -> TensorSplit:
                    return TensorSplit(*features_and_values(split))
            """,
        "model/loss.py": "def mse(output, target):\n    return F.mse_loss(output, target)\n",
        "model/metric.py": "def mae(output, target):\n    return (output - target).abs().mean()\n",
        "config": ("Linear", {}, "TableLoader", "mse", ["mae"], "Trainer"),
    },
    "padded-sequences": {
        "model/model.py": """
            class BagOfTokens(Stoppable):
                def __init__(self) -> None:
                    super().__init__()
                    self.embedding, self.out = nn.Embedding(3, 4, padding_idx=0), nn.Linear(4, 2)

                def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
                    self.count_forward()
                    return self.out(self.embedding(tokens).sum(1) / lengths[:, None])
            """,
        "data_loader/data_loaders.py": """
            def pad(items):
                tokens = torch.nn.utils.rnn.pad_sequence([tokens for tokens, _ in items], batch_first=True)
                lengths = torch.tensor([len(tokens) for tokens, _ in items])
                return (tokens, lengths), torch.tensor([label for _, label in items])


            class SequenceLoader(BaseDataLoader):
                collate_fn = staticmethod(pad)

                def load_split(self, split: str) -> list:
                    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
                    lengths = torch.randint(3, 10, (160,), generator=generator).tolist()
                    items = [torch.randint(1, 3, (length,), generator=generator) for length in lengths]
                    return [(tokens, int((tokens == 1).sum() > (tokens == 2).sum())) for tokens in items]
            """,
        "config": ("BagOfTokens", {}, "SequenceLoader", "cross_entropy", ["accuracy"], "Trainer"),
    },
    "segmentation": {
        "model/model.py": """
            class PixelClassifier(Stoppable):
                def __init__(self) -> None:
                    super().__init__()
                    self.conv = nn.Conv2d(1, 2, kernel_size=3, padding=1)

                def forward(self, images: torch.Tensor) -> torch.Tensor:
                    self.count_forward()
                    return self.conv(images)
            """,
        "data_loader/data_loaders.py": """
            class MaskLoader(BaseDataLoader):
                def load_split(self, split: str) -> TensorSplit:
                    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
                    images = torch.rand(160, 1, 8, 8, generator=generator)
                    return TensorSplit(images, (images[:, 0] > 0.5).long())  # a class per pixel: N x 8 x 8
            """,
        "config": ("PixelClassifier", {}, "MaskLoader", "cross_entropy", ["accuracy"], "Trainer"),
    },
    "multi-label": {
        "model/model.py": LINEAR,
        "data_loader/data_loaders.py": FEATURES
        + """
            class LabelsLoader(BaseDataLoader):
                def load_split(self, split: str) -> TensorSplit:
                    features, _ = features_and_values(split)
                    return TensorSplit(features, (features[:, :3] > 0).float())
            """,
        "model/loss.py": "def bce(output, target):\n    return F.binary_cross_entropy_with_logits(output, target)\n",
        "model/metric.py": "def label_accuracy(output, y):\n    return ((output > 0) == (y > 0)).float().mean()\n",
        "config": ("Linear", {"outputs": 3}, "LabelsLoader", "bce", ["label_accuracy"], "Trainer"),
    },
    "dict-inputs": {
        "model/model.py": """
            class TwoInputs(Stoppable):
                def __init__(self) -> None:
                    super().__init__()
                    self.left, self.right = nn.Linear(3, 2), nn.Linear(3, 2)

                def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
                    self.count_forward()
                    return self.left(left) + self.right(right)
            """,
        "data_loader/data_loaders.py": FEATURES
        + """
            class TwoInputsLoader(BaseDataLoader):
                def load_split(self, split: str) -> TensorSplit:
                    features, values = features_and_values(split)
                    inputs = {"left": features[:, :3], "right": features[:, 3:]}
                    return TensorSplit(inputs, (values[:, 0] > 0).long())
            """,
        "config": ("TwoInputs", {}, "TwoInputsLoader", "cross_entropy", ["accuracy"], "Trainer"),
    },
    "custom-step": {
        "model/model.py": """
            class LogitsAndPenalty(Stoppable):
                def __init__(self) -> None:
                    super().__init__()
                    self.layer = nn.Linear(6, 2)

                def forward(self, x: torch.Tensor) -> dict:
                    self.count_forward()
                    logits = self.layer(x)
                    return {"logits": logits, "penalty": logits.pow(2).mean()}
            """,
        "data_loader/data_loaders.py": FEATURES
        + """
            class SignLoader(BaseDataLoader):
                def load_split(self, split: str) -> TensorSplit:
                    features, values = features_and_values(split)
                    return TensorSplit(features, (values[:, 0] > 0).long())
            """,
        "trainer/trainer.py": """
            class PenalisedTrainer(BaseTrainer):
                def batch_loss(self, model, batch):
                    features, label = batch
                    out = model(features)
                    return BatchLoss(self.criterion(out["logits"], label) + 0.01 * out["penalty"], out["logits"], label)
            """,
        "config": ("LogitsAndPenalty", {}, "SignLoader", "cross_entropy", ["accuracy"], "PenalisedTrainer"),
    },
}
IMPORTS = {  # what the appended code needs besides what each file imports already
    "data_loader/data_loaders.py": "from base.base_data_loader import BaseDataLoader\n",
    "model/loss.py": "import torch.nn.functional as F\n",
}


def adapt(default_project: Path, folder: Path, case: str) -> Path:
    """A copy of the default project with the case's code added and named in its config.json."""
    project = folder / "project"
    shutil.copytree(default_project, project, ignore=shutil.ignore_patterns("saved", "__pycache__"))
    for name, code in CASES[case].items():
        if name != "config":
            path = project / name
            head = path.read_text(encoding="utf-8") + "\n" + IMPORTS.get(name, "")
            path.write_text(head + (STOPPABLE if name == "model/model.py" else "") + textwrap.dedent(code))
    model, model_args, loader, loss, metrics, trainer_type = CASES[case]["config"]
    config = json.loads((project / "config.json").read_text(encoding="utf-8"))
    config.update(arch={"type": model, "args": model_args}, loss=loss, metrics=metrics, lr_scheduler=None)
    config["data_loader"] = {"type": loader, "args": {"batch_size": 16, "validation_split": 0.2}}
    config["trainer"].update(type=trainer_type, epochs=2, save_dir=str(folder / "saved"), loggers=["csv"])
    (project / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return project


def trained_run(project: Path, save_dir: Path, stop_at: str | None = None) -> Path:
    env = {"STOP_AT": stop_at} if stop_at else {}
    result = run_project(project, "train.py", "-d", "cpu", env=env)
    assert result.returncode == (143 if stop_at else 0), describe(result)
    [run] = run_folders(save_dir, name="mnist_classifier")
    return run


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pth", weights_only=True)["model"]


@pytest.mark.parametrize("case", list(CASES))
def test_a_users_task_trains_resumes_exactly_after_sigterm_evaluates_and_predicts(
    case: str, default_project: Path, tmp_path: Path
) -> None:
    straight = trained_run(adapt(default_project, tmp_path / "straight", case), tmp_path / "straight" / "saved")
    project = adapt(default_project, tmp_path / "stopped", case)
    # 128 training samples in batches of 16: 8 steps an epoch, so the 11th is step 3 of epoch 2.
    run = trained_run(project, tmp_path / "stopped" / "saved", stop_at="11")
    assert torch.load(run / "last.pth", weights_only=True)["mid_epoch"]["step"] == 3
    resumed = run_project(project, "train.py", "-r", str(run))
    assert resumed.returncode == 0, describe(resumed)
    after, expected = weights(run), weights(straight)
    assert after.keys() == expected.keys() and all(torch.equal(after[key], expected[key]) for key in expected)

    evaluated = run_project(project, "test.py", "-r", str(run))
    assert evaluated.returncode == 0, describe(evaluated)
    _, _, _, _, metrics, _ = CASES[case]["config"]
    report = json.loads((run / "best.test.json").read_text(encoding="utf-8"))
    assert {"test_loss", *(f"test_{name}" for name in metrics)} <= report.keys() and report["samples"] == 160
    predicted = run_project(project, "predict.py", "-r", str(run), "--split", "test", "-o", str(tmp_path / "out.pt"))
    assert predicted.returncode == 0, describe(predicted)
    assert len(torch.load(tmp_path / "out.pt", weights_only=True)) == 160, "one output per test sample"
