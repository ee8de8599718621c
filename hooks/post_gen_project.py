"""Turn the accelerator and tracker answers into consistent config defaults, leave out the parts not
asked for, and record the answers.

Deterministic on purpose: the same answers and template commit always give the same files (no
probing of this machine beyond asking git for the template's commit, no network, no timestamps), so
regenerating and ``cruft update`` stay clean. The logic is
plain functions that tests import; only ``main`` reads the answers rendered into it as JSON.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# Datasets read from files by torchvision benefit from worker processes; the shipped sample and a table
# are tensors in memory, where workers only add start-up time and copies.
IN_MEMORY_DATASETS = frozenset({"mnist_sample", "csv_table"})
# Answers whose inputs are not images: config.json has no image-only keys (channels_last) for them.
NOT_IMAGES = frozenset({"csv_table"})

# A yes/no answer -> the files and folders of the part it adds, removed when the answer is no. The
# template holds every part; `cruft update --variables-to-update '{"sweeps": true}'` brings one in later.
OPTIONAL_PARTS = {
    "sweeps": ("sweep.py", "sweep.json", "sweeps", "tests/test_sweep.py", "docs/sweeps.md"),
    "mlflow": ("logger/mlflow_tracker.py", "tests/test_mlflow.py"),
    "wandb": ("logger/wandb_tracker.py", "tests/test_wandb.py"),
}
# A dataset answer -> the docs pages only it needs, removed for every other dataset.
DATASET_PAGES = {"csv_table": ("docs/csv-table.md",)}
# The answers that add an experiment tracker, by its name in trainer.loggers: a yes turns it on.
TRACKER_ANSWERS = ("tensorboard", "mlflow", "wandb")
# Config keys only an optional part reads: left out of config.json without it (the code keeps their defaults).
PART_SETTINGS = {"mlflow": ("trainer.tracking_uri",)}


def accelerator_defaults(accelerator: str, dataset: str) -> dict[str, Any]:
    """Config values (by dotted key) that fit the accelerator answer. Each key is in the template's config.json
    already (fused as null, prefetch_factor as 2), so a changed answer edits values only, never the lines
    around them that users edit (a cruft update then merges without conflicts)."""
    in_memory = dataset in IN_MEMORY_DATASETS
    if accelerator == "cpu":
        return {
            "device": "cpu",
            "trainer.amp": "off",
            "data_loader.args.pin_memory": False,
            "data_loader.args.num_workers": 0 if in_memory else 2,
        }
    if accelerator == "cuda":
        images = {} if dataset in NOT_IMAGES else {"trainer.channels_last": True}
        return images | {
            "device": "cuda",
            "trainer.amp": "auto",  # bf16 where the GPU supports it, else fp16 with a GradScaler
            "trainer.compile": "default",
            "optimizer.args.fused": True,  # one kernel for the whole update instead of one per tensor
            "data_loader.args.pin_memory": True,
            "data_loader.args.num_workers": 0 if in_memory else 4,
            "data_loader.args.prefetch_factor": 4,  # keep the GPU fed while workers decode
        }
    if accelerator == "auto":
        # Resolved at run time; amp and pin_memory only take effect when the run lands on CUDA.
        return {
            "device": "auto",
            "trainer.amp": "auto",
            "data_loader.args.pin_memory": True,
            "data_loader.args.num_workers": 0 if in_memory else 2,
        }
    raise ValueError(f"accelerator {accelerator!r}: expected auto, cpu or cuda")


def tracker_defaults(answers: dict[str, Any]) -> dict[str, Any]:
    """trainer.loggers with the trackers the answers asked for (metrics.csv is always written)."""
    return {"trainer.loggers": ["csv", *(name for name in TRACKER_ANSWERS if answers[name])]}


def parent_and_leaf(config: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """The object holding ``dotted`` (``a.b.c``: ``config["a"]["b"]``, which must exist) and the last key."""
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    return node, leaf


def apply_defaults(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Set each dotted key of ``defaults`` in ``config`` (which must already have the parent)."""
    for dotted, value in defaults.items():
        node, leaf = parent_and_leaf(config, dotted)
        node[leaf] = value
    return config


def remove_settings_not_asked_for(config: dict[str, Any], answers: dict[str, Any]) -> dict[str, Any]:
    """Delete from ``config`` each dotted key of PART_SETTINGS whose part was answered no."""
    for answer, keys in PART_SETTINGS.items():
        for dotted in () if answers[answer] else keys:
            node, leaf = parent_and_leaf(config, dotted)
            node.pop(leaf, None)
    return config


def recorded_answers(context: dict[str, Any]) -> dict[str, Any]:
    """The answers as the user gave them (no private keys: paths, extensions), sorted, then where the
    template is published and the commit it was generated from (when known), which ``cruft link``
    needs. Fed back as ``--extra-context``, cookiecutter ignores the two keys it does not know."""
    answers = {key: context[key] for key in sorted(context) if not key.startswith("_")}
    answers["_template"] = context.get("_template_url", "")
    commit = template_commit(context)
    return answers | ({"_commit": commit} if commit else {})


def template_commit(context: dict[str, Any]) -> str | None:
    """The template's git commit: cruft passes it in; cookiecutter passes the template's folder,
    which is a git checkout when it came from GitHub or a clone (None otherwise)."""
    if context.get("_commit"):
        return context["_commit"]
    repo_dir = context.get("_repo_dir")
    if not repo_dir:
        return None
    try:
        command = ["git", "-C", repo_dir, "rev-parse", "--show-toplevel", "HEAD"]
        top, commit = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None  # not a git checkout, or no git
    return commit if Path(top).resolve() == Path(repo_dir).resolve() else None  # not some enclosing repository


def remove_parts_not_asked_for(project: Path, answers: dict[str, Any]) -> list[str]:
    """Delete the files of each optional part whose answer is no; the paths removed, for tests."""
    removed = []
    for answer, paths in OPTIONAL_PARTS.items():
        if answers[answer]:
            continue
        for relative in paths:
            path = project / relative
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(relative)
    return removed


def remove_pages_of_other_datasets(project: Path, dataset: str) -> list[str]:
    """Delete the docs pages of each dataset answer but ``dataset``; the paths removed, for tests."""
    removed = []
    for answer, pages in DATASET_PAGES.items():
        for relative in pages:
            if answer != dataset and (project / relative).exists():
                (project / relative).unlink()
                removed.append(relative)
    return removed


def write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def generate(project: Path, context: dict[str, Any]) -> None:
    """Apply every answer-dependent change to the freshly generated ``project``; safe to repeat."""
    config_path = project / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    defaults = accelerator_defaults(context["accelerator"], context["dataset"]) | tracker_defaults(context)
    write_config(config_path, remove_settings_not_asked_for(apply_defaults(config, defaults), context))
    remove_parts_not_asked_for(project, context)
    remove_pages_of_other_datasets(project, context["dataset"])
    # For projects made with plain cookiecutter: what to answer again, and what to link cruft to.
    write_config(project / ".cookiecutter.json", recorded_answers(context))


def main() -> int:
    context = json.loads(r"""{{ cookiecutter | tojson }}""")
    generate(Path.cwd(), context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
