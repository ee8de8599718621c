"""export.py on a tiny trained run: every format round-trips within its tolerance, a failed check
writes nothing, and bad input is refused with one line."""

import dataclasses
import errno
import importlib.util
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import export
from inference.exporters import FORMATS
from parse_config import Config
from tests.tiny import TINY
from tests.tiny.data_loaders import TinyTensorLoader
from tests.tiny.models import TinyConvNet
from trainer.build import build_model
from utils.checkpoint import load_checkpoint

DIFFERENCE = re.compile(r"largest absolute difference from the model on the test batch: (\S+) \(tolerance (\S+)\)")


def skip_without_packages(name: str) -> None:
    missing = [module for module in FORMATS[name].needs if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"--format {name} needs {', '.join(missing)} (pip install -e '.[export]')")


def eager_model(run_dir: Path) -> torch.nn.Module:
    checkpoint = load_checkpoint(run_dir / "best.pth")
    model = build_model(Config.from_dict(checkpoint["config"]), TINY, checkpoint["classes"])
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def prepared_test_images(count: int) -> torch.Tensor:
    """The first ``count`` images of the tiny test split, prepared as test.py prepares them."""
    data = TinyTensorLoader()
    return data.batch_prep(torch.device("cpu"))(data.load_split("test").inputs[:count], 0, 0)


def reload(name: str, path: Path) -> torch.nn.Module | object:
    """Load an export the way the README tells a serving process to."""
    if name == "pt2":
        return torch.export.load(path).module()
    if name == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    state = torch.load(path, weights_only=True)
    assert all(isinstance(tensor, torch.Tensor) for tensor in state.values())
    description = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    model = build_model(Config.from_dict(description["config"]), TINY, description["classes"])
    model.load_state_dict(state)
    return model.eval()


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_round_trips_within_its_tolerance(name: str, tiny_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    skip_without_packages(name)
    path = tmp_path / f"model{FORMATS[name].suffix}"
    assert export.main(["-r", str(tiny_run), "--format", name, "-o", str(path)], modules=TINY) == 0
    difference, tolerance = map(float, DIFFERENCE.search(capsys.readouterr().out).groups())
    largest = eager_model(tiny_run)(prepared_test_images(32)).abs().max().item()
    assert difference <= tolerance == pytest.approx(FORMATS[name].tolerance * max(1.0, largest), rel=1e-2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, f"{path.name}.json"])  # no leftovers
    description = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    assert description["classes"] == ["horizontal", "vertical", "cross"]
    assert description["input"]["shape"] == ["batch", 1, 8, 8]
    with torch.no_grad():
        for count in (1, 7):  # the batch dimension is dynamic
            images = prepared_test_images(count)
            expected = eager_model(tiny_run)(images)
            assert (reload(name, path)(images) - expected).abs().max().item() <= tolerance


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_test_split_in_batches_of_one_still_exports_a_dynamic_batch(
    name: str, tiny_run: Path, tmp_path: Path
) -> None:
    """A first test batch of one image is doubled for the example input: torch.export would otherwise take
    the batch size for the constant 1."""
    skip_without_packages(name)
    path = tmp_path / f"model{FORMATS[name].suffix}"
    argv = ["-r", str(tiny_run), "--format", name, "-o", str(path), "--set", "data_loader.args.batch_size=1"]
    assert export.main(argv, modules=TINY) == 0
    with torch.no_grad():
        images = prepared_test_images(5)
        assert (reload(name, path)(images) - eager_model(tiny_run)(images)).abs().max().item() <= FORMATS[
            name
        ].tolerance


@pytest.mark.parametrize(("scale", "exported"), [(1e4, True), (1.0, False)], ids=["large-outputs", "small-outputs"])
def test_the_tolerance_grows_with_the_size_of_the_outputs(
    scale: float, exported: bool, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """float32 rounding grows with the values: an export off by 0.5 on logits near 1e4 (5e-5 of them) passes
    a tolerance of 1e-4, and fails it on logits near 1."""
    forward = TinyConvNet.forward
    monkeypatch.setattr(TinyConvNet, "forward", lambda self, x: forward(self, x).tanh() * scale)
    load = FORMATS["weights"].load
    off_by_half = dataclasses.replace(FORMATS["weights"], tolerance=1e-4,
                                      load=lambda *paths: lambda images: load(*paths)(images) + 0.5)  # fmt: skip
    monkeypatch.setitem(FORMATS, "weights", off_by_half)
    code = export.main(["-r", str(tiny_run), "--format", "weights", "-o", str(tmp_path / "m.pth")], modules=TINY)
    assert (code == 0) is exported and (tmp_path / "m.pth").exists() is exported


def test_default_output_is_beside_the_checkpoint(tiny_run: Path) -> None:
    assert export.main(["-r", str(tiny_run), "--format", "weights"], modules=TINY) == 0
    assert (tiny_run / "best.weights.pth").is_file() and (tiny_run / "best.weights.pth.json").is_file()


def test_a_failed_check_exits_1_and_writes_nothing(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setitem(FORMATS, "pt2", dataclasses.replace(FORMATS["pt2"], tolerance=-1.0))
    assert export.main(["-r", str(tiny_run), "--format", "pt2", "-o", str(tmp_path / "m.pt2")], modules=TINY) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the pt2 export's outputs differ"), lines
    assert not any(tmp_path.iterdir())


# Each is refused with one line and exit 2, writing nothing: (arguments, what the line says).
BAD_INPUT = {
    "missing-run": (["-r", "{tmp}/nothing", "--format", "pt2"], "does not exist"),
    "unknown-format": (["-r", "{run}", "--format", "tflite"], "--format: unknown format 'tflite'; choose one of"),
    "output-in-missing-folder": (["-r", "{run}", "--format", "pt2", "-o", "{tmp}/missing/m.pt2"], "does not exist"),
    "output-is-a-folder": (["-r", "{run}", "--format", "weights", "-o", "{tmp}"], "is a folder"),
    "missing-extra": (["-r", "{run}", "--format", "onnx"], 'pip install -e ".[export]"'),
    "output-is-the-checkpoint": (
        ["-r", "{run}/best.pth", "--format", "weights", "-o", "{run}/best.pth"],
        "is the checkpoint it exports, which this would overwrite; write to another file",
    ),
    "pt2-without-its-suffix": (["-r", "{run}", "--format", "pt2", "-o", "{tmp}/m.bin"], "use -o '{tmp}/m.pt2'"),
}


@pytest.mark.parametrize("case_id", list(BAD_INPUT))
def test_bad_input_is_one_line_and_writes_nothing(case_id: str, tiny_run: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(FORMATS["onnx"], needs=("no_such_module_here",)))
    arguments, expected = BAD_INPUT[case_id]
    before = sorted(tiny_run.iterdir())
    assert export.main([text.format(tmp=tmp_path, run=tiny_run) for text in arguments], modules=TINY) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected.format(tmp=tmp_path) in lines[0], lines
    assert not any(tmp_path.iterdir()) and sorted(tiny_run.iterdir()) == before


class FullDisk(io.RawIOBase):
    """A file on a full disk: every write fails as the kernel reports it."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fail_with(number: int) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(number, os.strerror(number))

    return fail


@pytest.mark.parametrize("name", ["pt2", "weights"])
def test_a_full_disk_is_one_line_and_writes_nothing(name: str, tiny_run: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """torch.export.save, given a file it cannot finish, aborted the process (a C++ terminate) after the line."""
    real_open = Path.open

    def open_on_a_full_disk(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        writes = path.name.startswith(".tmp-") and "w" in mode
        return FullDisk() if writes else real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_on_a_full_disk)
    output = tmp_path / f"m{FORMATS[name].suffix}"
    assert export.main(["-r", str(tiny_run), "--format", name, "-o", str(output)], modules=TINY) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write '{tmp_path}/"), lines
    assert lines[0].endswith("No space left on device; free some space"), lines
    assert not any(tmp_path.iterdir())


def test_a_read_only_folder_is_one_line(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Removing the temporary files that were never made fails there too; that must not hide the first error."""
    monkeypatch.setattr(tempfile, "mkstemp", fail_with(errno.EROFS))
    monkeypatch.setattr(Path, "unlink", fail_with(errno.EROFS))
    assert export.main(["-r", str(tiny_run), "--format", "weights", "-o", str(tmp_path / "m.pth")], modules=TINY) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("Read-only file system; write to another folder"), lines


TINY_FORWARD = TinyConvNet.forward


def branchy(self: TinyConvNet, x: torch.Tensor) -> torch.Tensor:
    out = TINY_FORWARD(self, x)
    return out if out.sum() > 0 else -out  # a branch on the data, which torch.export cannot trace


# A model's forward that export.py cannot export -> what its one line says.
UNEXPORTABLE_MODELS = {
    "not-a-tensor": (lambda self, x: (torch.zeros(len(x), 3),), "arch: TinyConvNet returns a tuple; export.py exp"),
    "branch-on-the-data": (branchy, "TinyConvNet cannot be exported: Could not guard on data-dependent expression"),
}


@pytest.mark.parametrize("case_id", list(UNEXPORTABLE_MODELS))
def test_a_model_that_cannot_be_exported_is_one_line(case_id: str, tiny_run: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """torch.export printed the traced graph, about a hundred lines, before the error line."""
    forward, expected = UNEXPORTABLE_MODELS[case_id]
    monkeypatch.setattr(TinyConvNet, "forward", forward)
    assert export.main(["-r", str(tiny_run), "--format", "pt2", "-o", str(tmp_path / "m.pt2")], modules=TINY) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not any(tmp_path.iterdir())
