"""Unit tests of the hook functions, imported straight from hooks/ (their Jinja lives only in main)."""

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

HOOKS = Path(__file__).resolve().parents[1] / "hooks"


def load_hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HOOKS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")


@pytest.mark.parametrize("slug", ["mnist_classifier", "my_project2", "_private", "cifar"])
def test_good_slugs_pass(slug: str) -> None:
    assert pre_gen.slug_problem(slug) is None


@pytest.mark.parametrize(
    ("slug", "fragment"),
    [
        ("my-project", "'my_project'"),
        ("My Project", "'my_project'"),
        ("2fast", "'my_2fast'"),
        ("café", "'caf'"),
        ("", "not a lowercase Python identifier"),
        ("class", "keyword"),
        ("match", "keyword"),
        ("torch", "shadow"),
        ("test", "shadow"),
        ("json", "shadow"),
        ("utils", "shadow"),
    ],
)
def test_bad_slugs_name_the_problem_and_a_fix(slug: str, fragment: str) -> None:
    problem = pre_gen.slug_problem(slug)
    assert problem is not None and fragment in problem
    assert "\n" not in problem


def test_free_text_may_hold_quotes_but_not_be_empty() -> None:
    assert pre_gen.free_text_problem("author", 'O\'Brien "Q" \\ Ünïcødé') is None
    assert "empty" in pre_gen.free_text_problem("author", "   ")
    assert "control" in pre_gen.free_text_problem("description", "bell\x07")


@pytest.mark.parametrize("dataset", ["mnist_sample", "cifar10"])
@pytest.mark.parametrize("accelerator", ["auto", "cpu", "cuda"])
def test_accelerator_defaults_are_consistent(accelerator: str, dataset: str) -> None:
    defaults = post_gen.accelerator_defaults(accelerator, dataset)
    assert defaults["device"] == accelerator
    assert (defaults["trainer.amp"] == "off") == (accelerator == "cpu")
    assert defaults["data_loader.args.pin_memory"] == (accelerator != "cpu")
    assert (defaults["data_loader.args.num_workers"] == 0) == (dataset == "mnist_sample")
    gpu_only = {
        "trainer.compile": "default",
        "trainer.channels_last": True,
        "optimizer.args.fused": True,
        "data_loader.args.prefetch_factor": 4,
    }
    assert all(defaults.get(key) == value for key, value in gpu_only.items()) == (accelerator == "cuda")


def test_unknown_accelerator_is_refused() -> None:
    with pytest.raises(ValueError, match="accelerator 'tpu'"):
        post_gen.accelerator_defaults("tpu", "mnist_sample")


def test_generate_is_idempotent(tmp_path: Path) -> None:
    """cruft re-runs hooks; running twice must give the same files as running once."""
    config = {
        "device": "x",
        "trainer": {"amp": "x", "compile": "x", "channels_last": None},
        "optimizer": {"args": {}},
        "data_loader": {"args": {"pin_memory": None, "num_workers": 9}},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    context = {"accelerator": "cuda", "dataset": "mnist_sample", "tensorboard": False}
    post_gen.generate(tmp_path, context)
    first = (tmp_path / "config.json").read_text()
    post_gen.generate(tmp_path, context)
    assert (tmp_path / "config.json").read_text() == first
    assert json.loads(first)["device"] == "cuda"
    assert json.loads((tmp_path / ".cookiecutter.json").read_text()) == context
