"""Train baked projects for real, in subprocesses, and check what they learned and wrote."""

import csv
import importlib.util
import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DEFAULT_SLUG, EXTENDABLE, describe, run_folders, run_project


def test_default_project_reaches_95_percent_on_held_out_digits(default_project: Path) -> None:
    """The README promise: default answers, default command, >= 95% test accuracy for best.pth."""
    train = run_project(default_project, "train.py", "-c", "config.json")
    assert train.returncode == 0, describe(train)
    [run] = run_folders(default_project / "saved")
    evaluate = run_project(default_project, "test.py", "-r", f"saved/{DEFAULT_SLUG}")
    assert evaluate.returncode == 0, describe(evaluate)
    assert "test_accuracy" in evaluate.stdout
    report = json.loads((run / "best.test.json").read_text())
    assert report["checkpoint"] == "best.pth"
    assert report["samples"] == 1000
    assert report["test_accuracy"] >= 0.95, report


@pytest.fixture(scope="module")
def short_run(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch run of the default project in its own save_dir; returns the run folder."""
    save_dir = tmp_path_factory.mktemp("short")
    result = run_project(
        default_project, "train.py", "-c", "config.json", "--set", "trainer.epochs=2",
        "--set", f"trainer.save_dir={json.dumps(str(save_dir))}", "-d", "cpu", *EXTENDABLE,
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    [run] = run_folders(save_dir)
    return run


def test_short_run_learns_and_writes_its_run_folder(short_run: Path) -> None:
    names = {p.name for p in short_run.iterdir()}
    assert {"config.json", "train.log", "last.pth", "best.pth"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    last = torch.load(short_run / "last.pth", weights_only=True)
    assert last["epoch"] == 2
    assert last["metrics"]["val_accuracy"] > 0.5, last["metrics"]  # chance is 0.1
    assert json.loads((short_run / "config.json").read_text())["trainer"]["epochs"] == 2
    assert "epoch 2/2" in (short_run / "train.log").read_text()


def test_test_py_prints_and_writes_metrics(default_project: Path, short_run: Path) -> None:
    result = run_project(default_project, "test.py", "-r", str(short_run / "last.pth"), "-d", "cpu")
    assert result.returncode == 0, describe(result)
    report = json.loads((short_run / "last.test.json").read_text())
    assert report["epoch"] == 2
    assert report["test_accuracy"] > 0.5
    assert f"{report['test_accuracy']:.4f}" in result.stdout


def write_test_digits(project: Path, folder: Path) -> list[int]:
    """The shipped sample's 1,000 test digits as PNG files ``folder/NNNN.png``; returns their labels."""
    from PIL import Image

    with np.load(project / "data" / "mnist_sample.npz") as sample:
        images, labels = sample["test_images"], sample["test_labels"]
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{index:04d}.png")
    return labels.tolist()


def test_predict_agrees_with_test_py_and_every_export_round_trips(default_project: Path, short_run: Path,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    """predict.py on PNGs of the test digits scores what test.py scores; export.py writes and checks each format."""
    labels = write_test_digits(default_project, tmp_path / "digits")
    out = tmp_path / "predictions.csv"
    checkpoint = str(short_run / "last.pth")
    predict = run_project(default_project, "predict.py", "-r", checkpoint, str(tmp_path / "digits"), "-o", str(out))
    assert predict.returncode == 0, describe(predict)
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(labels) == 1000
    correct = sum(int(row["index"]) == labels[int(Path(row["path"]).stem)] for row in rows)
    assert all(row["class"] == row["index"] for row in rows)  # the digits' names are the digits
    evaluate = run_project(default_project, "test.py", "-r", checkpoint, "-d", "cpu")
    assert evaluate.returncode == 0, describe(evaluate)
    assert correct / 1000 == pytest.approx(json.loads((short_run / "last.test.json").read_text())["test_accuracy"])
    with_onnx = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))
    formats = [("pt2", ".pt2"), ("weights", ".weights.pth")] + ([("onnx", ".onnx")] if with_onnx else [])
    for name, suffix in formats:
        exported = run_project(default_project, "export.py", "-r", checkpoint, "--format", name,
                               "-o", str(tmp_path / f"model{suffix}"))  # fmt: skip
        assert exported.returncode == 0, describe(exported)
        assert "largest absolute difference from the model on the test batch" in exported.stdout
        assert (tmp_path / f"model{suffix}").is_file() and (tmp_path / f"model{suffix}.json").is_file()


def test_resume_continues_at_epoch_3_in_the_same_folder(default_project: Path, short_run: Path, tmp_path: Path) -> None:
    run = tmp_path / DEFAULT_SLUG / short_run.name
    shutil.copytree(short_run, run)
    result = run_project(default_project, "train.py", "-r", str(run / "last.pth"), "--set", "trainer.epochs=4")
    assert result.returncode == 0, describe(result)
    assert run_folders(tmp_path) == [run], "resume must not open a new run folder"
    assert "continuing at epoch 3" in result.stderr
    assert "epoch 1/4" not in result.stderr and "epoch 3/4" in result.stderr
    last = torch.load(run / "last.pth", weights_only=True)
    assert last["epoch"] == 4
    assert last["config"]["trainer"]["epochs"] == 4
    log = (run / "train.log").read_text()
    assert "epoch 2/2" in log and "epoch 4/4" in log, "the log of the first part must be kept"
    assert json.loads((run / "config.json").read_text())["trainer"]["epochs"] == 2
    assert (run / "config-resume-2.json").is_file()


def test_reduce_lr_on_plateau_is_stepped_with_the_monitored_metric(default_project: Path, tmp_path: Path) -> None:
    scheduler = {"type": "ReduceLROnPlateau", "args": {"mode": "min", "patience": 0, "factor": 0.5}}
    result = run_project(
        default_project, "train.py", "-c", "config.json", "-d", "cpu",
        "--set", f"lr_scheduler={json.dumps(scheduler)}", "--set", "trainer.epochs=1",
        "--set", f"trainer.save_dir={json.dumps(str(tmp_path))}",
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    [run] = run_folders(tmp_path)
    state = torch.load(run / "last.pth", weights_only=True)
    assert state["lr_scheduler"]["best"] == pytest.approx(state["metrics"]["val_loss"])


# Each refused before anything is written; the value is (arguments, what the one error line must say). A few
# through the real command line: the project's own tests/test_refusals.py has the whole table, in-process.
BAD_INPUT = {
    "unknown-key": (["--set", "trainer.epochz=3"], "did you mean 'epochs'"),
    "bad-json": (["--set", "optimizer.args.lr=0.0.1"], "is not a JSON value"),
    "wrong-type": (["--set", 'trainer.epochs="ten"'], "trainer.epochs: expected an integer from 1 to 1,000,000"),
    "infinite-lr": (["--set", "optimizer.args.lr=1e999"], "optimizer.args.lr: expected a finite number, got Infinity"),
    # torch warns as it builds a zero-width model; the terminal shows only the refusal
    "width-0": (["--set", "arch.args.width=0"], "arch: ConvNet cannot take the data's batches"),
    "unknown-arch": (["--set", "arch.type=ConvNett"], "available: ConvNet"),
    "bad-monitor-mode": (["--set", "trainer.monitor=avg val_loss"], "'min <metric>', 'max <metric>' or 'off'"),
    "missing-gpu": (["-d", "cuda:7"], "--device"),
    "missing-checkpoint": (["-r", "saved/nothing/last.pth"], "does not exist"),
}


@pytest.fixture(scope="module")
def bad_input_runs(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Run every refused command, two at a time (each spends seconds importing torch), keyed by id."""

    def attempt(case_id: str) -> tuple:
        save_dir = tmp_path_factory.mktemp(case_id)
        args, _ = BAD_INPUT[case_id]
        result = run_project(
            default_project, "train.py", "-c", "config.json", "--set",
            f"trainer.save_dir={json.dumps(str(save_dir))}", *args,
        )  # fmt: skip
        return result, save_dir

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(BAD_INPUT, pool.map(attempt, BAD_INPUT), strict=True))


@pytest.mark.parametrize("case_id", list(BAD_INPUT))
def test_bad_input_is_one_clear_line_and_writes_nothing(bad_input_runs: dict, case_id: str) -> None:
    result, save_dir = bad_input_runs[case_id]
    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert BAD_INPUT[case_id][1] in lines[0]
    assert not any(save_dir.iterdir()), "a refused run must leave nothing on disk"


def test_config_missing_a_key_is_refused(default_project: Path, tmp_path: Path) -> None:
    config = json.loads((default_project / "config.json").read_text())
    del config["loss"]
    config["trainer"]["save_dir"] = str(tmp_path / "saved")
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run_project(default_project, "train.py", "-c", str(tmp_path / "config.json"))
    assert result.returncode == 2, describe(result)
    assert result.stderr.strip() == "error: loss: missing; expected the name of a function in model/loss.py"
    assert not (tmp_path / "saved").exists()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an uncompressed IDX file (the format torchvision's MNIST reads)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_mnist_path_offline(cookies, tmp_path: Path) -> None:
    """The `mnist` answer trains through torchvision's MNIST on IDX files the test writes."""
    result = cookies.bake(extra_context={"dataset": "mnist"})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    sample = np.load(project / "data" / "mnist_sample.npz")
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", sample["train_images"][:1200])
    write_idx(raw / "train-labels-idx1-ubyte", sample["train_labels"][:1200])
    write_idx(raw / "t10k-images-idx3-ubyte", sample["test_images"][:300])
    write_idx(raw / "t10k-labels-idx1-ubyte", sample["test_labels"][:300])

    data_dir = json.dumps(str(tmp_path / "data"))
    common = ["-d", "cpu", "--set", f"data_loader.args.data_dir={data_dir}", "--set", "data_loader.args.download=false"]
    train = run_project(
        project, "train.py", "-c", "config.json", *common, "--set", "trainer.epochs=3",
        "--set", "data_loader.args.num_workers=0", "--set", "data_loader.args.batch_size=32",
        "--set", f"trainer.save_dir={json.dumps(str(tmp_path / 'saved'))}",
    )  # fmt: skip
    assert train.returncode == 0, describe(train)
    [run] = run_folders(tmp_path / "saved")
    evaluate = run_project(project, "test.py", "-r", str(run), *common)
    assert evaluate.returncode == 0, describe(evaluate)
    report = json.loads((run / "best.test.json").read_text())
    assert report["samples"] == 300
    assert report["test_accuracy"] > 0.5, report


def test_benchmark_command_prints_the_table(default_project: Path) -> None:
    result = run_project(
        default_project, "-m", "benchmarks.bench_trainer", "--epochs", "2", "-d", "cpu",
        "--set", "arch.args.width=8", "--set", "data_loader.args.augment=false",
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    header, *rows, ratio = result.stdout.strip().splitlines()[1:]
    assert header.startswith("path") and "samples/s" in header and "peak RSS MiB" in header
    assert [row.split()[0] for row in rows] == ["hand-written", "Trainer"]
    assert all(float(row.split()[1]) > 0 for row in rows)
    assert ratio.startswith("ratio Trainer/hand-written: time ")


OFFLINE_RUN = """
import sys, urllib.error, urllib.request

def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

urllib.request.urlopen = no_network  # what torchvision downloads with
import train
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("dataset", "download", "message"),
    [
        ("cifar10", "true", "data_loader.args.download: CIFAR10 could not be downloaded"),
        ("fashion_mnist", "true", "data_loader.args.download: FashionMNIST could not be downloaded"),
        ("mnist", "true", "data_loader.args.download: MNIST could not be downloaded"),
        ("mnist", "false", "data_loader.args.data_dir: MNIST not found or not readable under"),
    ],
)
def test_a_dataset_that_cannot_be_downloaded_is_one_line(
    cookies, tmp_path: Path, dataset: str, download: str, message: str
) -> None:
    project = Path(cookies.bake(extra_context={"dataset": dataset}).project_path)
    data_dir = json.dumps(str(tmp_path / "data"))
    save_dir = json.dumps(str(tmp_path / "s"))
    result = run_project(
        project, "-c", OFFLINE_RUN, "-d", "cpu", "--set", f"data_loader.args.data_dir={data_dir}",
        "--set", f"data_loader.args.download={download}", "--set", f"trainer.save_dir={save_dir}",
    )  # fmt: skip
    assert result.returncode == 2, describe(result)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {message}") and "Traceback" not in result.stderr
    fix = "set data_loader.args.download to false" if download == "true" else "set data_loader.args.download to true"
    assert fix in line
    assert not (tmp_path / "s").exists()


def write_image_folders(root: Path, classes: dict[str, tuple[int, int, int]]) -> None:
    """PNG files in ``root/<split>/<class>/``: each class a colour plus noise (the test split lacks one class)."""
    from PIL import Image

    generator = np.random.default_rng(0)
    for split, count in (("train", 24), ("test", 6)):
        for name, colour in list(classes.items())[: 3 if split == "train" else 2]:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = np.clip(np.array(colour) + generator.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")


def test_image_folder_reads_its_classes_from_the_folders(cookies, tmp_path: Path) -> None:
    project = Path(cookies.bake(extra_context={"dataset": "image_folder"}).project_path)
    config = json.loads((project / "config.json").read_text())
    assert "num_classes" not in config["arch"]["args"] and config["data_loader"]["args"]["data_dir"] == "data/images/"
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    write_image_folders(project / "data" / "images", colours)
    hidden = project / "data" / "images" / "train" / ".ipynb_checkpoints"  # what Jupyter leaves: not a class
    hidden.mkdir()
    shutil.copy(project / "data" / "images" / "train" / "red" / "0.png", hidden / "0.png")
    arguments = [
        "train.py", "-d", "cpu", "--set", "trainer.epochs=10", "--set", "arch.args.width=8",
        "--set", "data_loader.args.image_size=16", "--set", "data_loader.args.num_workers=0",
        "--set", "data_loader.args.validation_split=0.25", "--set", f"trainer.save_dir={json.dumps(str(tmp_path))}",
    ]  # fmt: skip
    empty = project / "data" / "images" / "train" / "yellow"  # a class with nothing to learn from
    empty.mkdir()
    refused = run_project(project, *arguments)
    assert refused.returncode == 2 and not tmp_path.joinpath("image_classifier").exists(), describe(refused)
    assert "error: data_loader.args.data_dir: class folder 'data/images/train/yellow' holds no images" in refused.stderr
    empty.rmdir()
    train = run_project(project, *arguments)
    assert train.returncode == 0, describe(train)
    [run] = run_folders(tmp_path, name="image_classifier")  # the default name follows the dataset answer
    assert torch.load(run / "best.pth", weights_only=True)["classes"] == ["blue", "green", "red"]
    unknown = project / "data" / "images" / "test" / "purple"  # a class the model was never trained on
    unknown.mkdir()
    shutil.copy(project / "data" / "images" / "test" / "red" / "0.png", unknown / "0.png")
    evaluate = run_project(project, "test.py", "-r", str(run))
    assert evaluate.returncode == 0, describe(evaluate)
    assert "data/images/test: purple not among the training classes (blue, green, red); left out" in evaluate.stderr
    report = json.loads((run / "best.test.json").read_text())
    assert report["classes"] == "blue, green, red" and report["samples"] == 12
    assert report["test_accuracy"] > 0.9, "the test split lacks 'blue' but keeps the training labels"


def test_an_unreadable_image_file_is_one_line_naming_it(cookies, tmp_path: Path) -> None:
    # Read by DataLoader workers (the image_folder default): the refusal crosses a process boundary.
    project = Path(cookies.bake(extra_context={"dataset": "image_folder"}).project_path)
    write_image_folders(project / "data" / "images", {"red": (200, 30, 30), "green": (30, 200, 30)})
    broken = project / "data" / "images" / "train" / "red" / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    train = run_project(
        project, "train.py", "-d", "cpu", "--set", "trainer.epochs=1", "--set", "data_loader.args.image_size=16",
        "--set", "data_loader.args.num_workers=2", "--set", f"trainer.save_dir={json.dumps(str(tmp_path))}",
    )  # fmt: skip
    assert train.returncode == 2, describe(train)
    [line] = [line for line in train.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: image file {str(broken.relative_to(project))!r} cannot be read (")
    assert "remove or replace it" in line and "Traceback" not in train.stderr, train.stderr[-2000:]


def run_in_terminal(project: Path, columns: int, *args: str) -> str:
    """Run ``python <args>`` with stdout and stderr on a pseudo-terminal ``columns`` wide; what it showed."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": str(columns), "TERM": "xterm"}
    process = subprocess.Popen([sys.executable, *args], cwd=project, env=env, stdout=follower, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.wait(timeout=300) == 0, shown.decode(errors="replace")[-3000:]
    return shown.decode(errors="replace")


def test_progress_bar_and_log_lines_share_an_80_column_terminal(default_project: Path, tmp_path: Path) -> None:
    shown = run_in_terminal(
        default_project, 80, "train.py", "-d", "cpu", "--set", "arch.args.width=8", "--set", "trainer.epochs=2",
        "--set", "trainer.verbosity=2", "--set", "trainer.log_step=10",
        "--set", f"trainer.save_dir={json.dumps(str(tmp_path))}",
    )  # fmt: skip
    segments = [segment for line in shown.split("\n") for segment in line.split("\r") if segment.strip()]
    bars = [segment for segment in segments if "%|" in segment]
    assert bars, shown[-2000:]
    assert all(len(bar.rstrip()) <= 80 for bar in bars), max(bars, key=len)
    assert any("loss 0." in bar or "loss 1." in bar or "loss 2." in bar for bar in bars), "the bar keeps the loss"
    logged = [segment for segment in segments if re.match(r"(epoch \d+ step |epoch \d+/\d+  train|\s+val  )", segment)]
    assert any("step 20/" in line for line in logged), "verbosity 2 logs progress lines"
    assert not [line for line in logged if "%|" in line or "it/s" in line], "log lines never mix with the bar"
    assert any("/2  train loss" in line for line in logged) and any("val   loss" in line for line in logged)
    assert all(len(line.rstrip()) <= 100 for line in logged if " step " not in line), logged
