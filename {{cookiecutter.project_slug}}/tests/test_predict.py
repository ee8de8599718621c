"""predict.py on a tiny trained run: it prepares files exactly as the test split, agrees with test.py (on files
and with --split), sets unreadable files aside, and refuses bad input with one line."""

import csv
import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

import predict
import test as test_script  # the project's test.py
from base.images import ImageReader
from tests.tiny import TINY
from tests.tiny.data_loaders import CLASSES, TinyTensorLoader
from tests.tiny.models import TinyConvNet


def write_pngs(folder: Path, images: torch.Tensor, targets: torch.Tensor) -> list[Path]:
    """Each grey uint8 1 x H x W image as ``folder/<label>/<index>.png``."""
    paths = []
    for index, (image, target) in enumerate(zip(images, targets.tolist(), strict=True)):
        path = folder / str(target) / f"{index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def test_split_pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test split as PNG files, in one folder per label."""
    split = TinyTensorLoader().load_split("test")
    folder = tmp_path_factory.mktemp("pngs")
    write_pngs(folder, split.inputs, split.targets)
    return folder


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_png_reads_back_as_the_split_holds_it(test_split_pngs: Path) -> None:
    split = TinyTensorLoader().load_split("test")
    reader = TinyTensorLoader().image_reader()
    assert torch.equal(reader(test_split_pngs / str(int(split.targets[5])) / "005.png"), split.inputs[5])


def test_reader_resizes_and_converts_to_the_loader_s_channels(tmp_path: Path) -> None:
    Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "wide.png")
    image = ImageReader(channels=1, size=8)(tmp_path / "wide.png")
    assert image.shape == (1, 8, 8) and image.dtype == torch.uint8


def test_an_image_over_pil_s_pixel_limit_is_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PIL's DecompressionBombError is no OSError: predict.py and image_folder training crashed on it instead of
    skipping the file or naming it in one line."""
    Image.new("L", (40, 20)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses images of over twice the limit
    with pytest.raises(OSError, match="exceeds limit.*MAX_IMAGE_PIXELS raises the limit"):
        ImageReader(channels=1, size=8)(tmp_path / "huge.png")


@pytest.mark.parametrize("channels", [1, 3])
def test_reader_scales_16_bit_grey_to_the_same_pixels_as_8_bit(tmp_path: Path, channels: int) -> None:
    """PIL's own conversion clips 16-bit values at 255: the picture would turn black and white."""
    pixels = torch.arange(0, 256, dtype=torch.int32).reshape(16, 16)
    Image.fromarray(pixels.to(torch.uint8).numpy(), mode="L").save(tmp_path / "grey8.png")
    Image.fromarray((pixels * 257).to(torch.int32).numpy().astype("uint16")).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I;16"), "a 16-bit PNG"
    reader = ImageReader(channels=channels)
    assert torch.equal(reader(tmp_path / "grey16.png"), reader(tmp_path / "grey8.png"))


def test_predict_agrees_with_test_py(tiny_run: Path, test_split_pngs: Path, tmp_path: Path) -> None:
    out = tmp_path / "predictions.csv"
    assert predict.main(["-r", str(tiny_run), str(test_split_pngs), "-o", str(out)], modules=TINY) == 0
    rows = read_rows(out)
    assert len(rows) == 60
    assert list(rows[0]) == ["path", "index", "class", "probability", *[f"{c}_{k}" for k in (2, 3)
                             for c in ("index", "class", "probability")]]  # fmt: skip
    correct = sum(int(row["index"]) == int(Path(row["path"]).parent.name) for row in rows)
    assert all(row["class"] == CLASSES[int(row["index"])] for row in rows)
    assert all(1 >= float(row["probability"]) >= float(row["probability_2"]) >= float(row["probability_3"])
               for row in rows)  # fmt: skip
    assert test_script.main(["-r", str(tiny_run)], modules=TINY) == 0
    report = json.loads((tiny_run / "best.test.json").read_text(encoding="utf-8"))
    assert correct / len(rows) == pytest.approx(report["test_accuracy"], abs=1e-6)
    assert correct / len(rows) > 0.5  # chance is a third: the comparison means something


def test_predict_on_a_split_agrees_with_test_py(tiny_run: Path, tmp_path: Path) -> None:
    """--split runs the model over a split of the run's data, for any loader: a class per row where the
    checkpoint names classes, and the model's outputs, as a table (.csv) or a tensor (.pt)."""
    table, tensor_file = tmp_path / "test.csv", tmp_path / "test.pt"
    for out in (table, tensor_file):
        assert predict.main(["-r", str(tiny_run), "--split", "test", "-o", str(out)], modules=TINY) == 0
    rows = read_rows(table)
    assert list(rows[0]) == ["input", "sample", "index", "class", "output_0", "output_1", "output_2"]
    assert [(row["input"], row["sample"]) for row in rows] == [("test", str(index)) for index in range(60)]
    assert all(row["class"] == CLASSES[int(row["index"])] for row in rows)
    outputs = torch.load(tensor_file, weights_only=True)
    assert torch.equal(torch.tensor([[float(row[f"output_{k}"]) for k in range(3)] for row in rows]), outputs)
    assert [int(row["index"]) for row in rows] == outputs.argmax(dim=1).tolist()
    targets = TinyTensorLoader().load_split("test").targets.tolist()
    correct = sum(int(row["index"]) == target for row, target in zip(rows, targets, strict=True))
    assert test_script.main(["-r", str(tiny_run)], modules=TINY) == 0
    report = json.loads((tiny_run / "best.test.json").read_text(encoding="utf-8"))
    assert correct / len(rows) == pytest.approx(report["test_accuracy"], abs=1e-6)


def test_files_globs_and_top_k(tiny_run: Path, test_split_pngs: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "p.csv"
    one = next((test_split_pngs / "1").iterdir())
    # The last three name one file three ways (as found, relative, resolved): it is classified once.
    inputs = [str(test_split_pngs / "0" / "*.png"), str(one), os.path.relpath(one), str(one.resolve())]
    debug = ["--set", "trainer.verbosity=2"]
    assert predict.main(["-r", str(tiny_run), *inputs, "--top-k", "1", "--bs", "4", "-o", str(out), *debug],
                        modules=TINY) == 0  # fmt: skip
    assert "STREAM" not in capsys.readouterr().err, "PIL's debug records stay out of verbosity 2"
    rows = read_rows(out)
    assert list(rows[0]) == ["path", "index", "class", "probability"]
    assert len(rows) == len(list((test_split_pngs / "0").iterdir())) + 1


def test_unreadable_files_are_skipped_with_a_warning(tiny_run: Path, test_split_pngs: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "p.csv"
    good = str(test_split_pngs / "2")
    assert predict.main(["-r", str(tiny_run), good, str(tmp_path / "broken.png"), "-o", str(out)], modules=TINY) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.png" in warnings[0]
    assert len(read_rows(out)) == len(list((test_split_pngs / "2").iterdir()))


def test_mixed_precision_where_the_config_asks(tiny_run: Path, test_split_pngs: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    args = ["-r", str(tiny_run), str(test_split_pngs), "-o", str(out), "--set", "trainer.amp=bf16"]
    assert predict.main(args, modules=TINY) == 0
    assert len(read_rows(out)) == 60


# Each is refused with one line and exit 2, writing nothing: (arguments after -r RUN, what the line says).
BAD_INPUT = {
    "missing-run": (["-r", "{tmp}/nothing", "{pngs}"], "does not exist"),
    "folder-without-images": (["{tmp}/empty"], "no images in"),
    "corrupt-image": (["{tmp}/broken.png"], "could be read"),
    "missing-input": (["{tmp}/missing.png"], "does not exist"),
    "glob-without-matches": (["{tmp}/*.jpeg"], "no image files match"),
    "output-in-missing-folder": (["{pngs}", "-o", "{tmp}/missing/p.csv"], "does not exist; create it first"),
    "output-is-a-folder": (["{pngs}", "-o", "{tmp}/empty"], "is a folder"),
    "output-is-an-input": (["{tmp}/broken.png", "-o", "{tmp}/broken.png"], "is one of the input images, which"),
    "top-k-zero": (["{pngs}", "--top-k", "0"], "--top-k: expected an integer >= 1"),
    "outputs-to-neither-csv-nor-pt": (["--split", "test", "-o", "{tmp}/p.txt"], "write the outputs to a .csv or a .pt"),
}


@pytest.mark.parametrize("case_id", list(BAD_INPUT))
def test_bad_input_is_one_line_and_writes_nothing(
    case_id: str, tiny_run: Path, test_split_pngs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_bytes(b"not an image")
    arguments, expected = BAD_INPUT[case_id]
    arguments = [text.format(tmp=tmp_path, pngs=test_split_pngs) for text in arguments]
    if "-r" not in arguments:
        arguments = ["-r", str(tiny_run), *arguments]
    if "-o" not in arguments:
        arguments += ["-o", str(tmp_path / "p.csv")]
    before = sorted(tmp_path.rglob("*"))
    assert predict.main(arguments, modules=TINY) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert sorted(tmp_path.rglob("*")) == before


def fails_on_size(self: TinyConvNet, x: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (5x784 and 8x16)")


# A model's forward that predict.py cannot use -> what its one line says.
UNUSABLE_MODELS = {
    "cannot-take-the-files": (
        fails_on_size,
        "the model fails on the files, read as images of shape (1, 8, 8) (mat1 and mat2 shapes cannot be multiplied "
        "(5x784 and 8x16)); the data loader reads files with as many channels as its mean and std have values, "
        "resized to its image_size",
    ),
    "one-output": (lambda self, x: torch.zeros(len(x), 1), "arch: the model returns (60, 1); predict.py needs"),
    "not-a-tensor": (lambda self, x: (torch.zeros(len(x), 3),), "arch: the model returns tuple; predict.py needs"),
}


@pytest.mark.parametrize("case_id", list(UNUSABLE_MODELS))
def test_a_model_that_cannot_classify_the_files_is_one_line(
    case_id: str, tiny_run: Path, test_split_pngs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    forward, expected = UNUSABLE_MODELS[case_id]
    monkeypatch.setattr(TinyConvNet, "forward", forward)
    out = tmp_path / "p.csv"
    assert predict.main(["-r", str(tiny_run), str(test_split_pngs), "--bs", "60", "-o", str(out)], modules=TINY) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not out.exists()


def test_more_outputs_than_class_names_is_a_warning(
    tiny_run: Path, test_split_pngs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(TinyConvNet, "forward", lambda self, x: torch.arange(5.0).expand(len(x), 5))
    out = tmp_path / "p.csv"
    assert predict.main(["-r", str(tiny_run), str(test_split_pngs / "0"), "-o", str(out)], modules=TINY) == 0
    assert "warning: the model scores 5 classes but its checkpoint names 3" in capsys.readouterr().err
    assert {row["class"] for row in read_rows(out)} == {"4"}, "the top class has no name: its index"


def test_files_of_another_size_than_the_model_trained_on_are_skipped_whichever_comes_first(
    tiny_run: Path, test_split_pngs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files kept at their own size (no image_size) are held to the size of the training samples, which the
    checkpoint keeps; the first file of a batch used to set the size, so one odd file first skipped the rest."""
    odd = tmp_path / "0-odd.png"  # sorted before the others
    Image.new("L", (20, 16), 128).save(odd)
    good = sorted((test_split_pngs / "1").iterdir())
    out = tmp_path / "p.csv"
    assert predict.main(["-r", str(tiny_run), str(odd), *map(str, good), "-o", str(out)], modules=TINY) == 0
    assert [Path(row["path"]).name for row in read_rows(out)] == [path.name for path in good]
    [warning] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    shape = "x".join(map(str, TinyTensorLoader().load_split("test").inputs.shape[1:]))
    assert f"0-odd.png: its size is 1x16x20, not {shape} (the model trained on)" in warning, warning
