"""Run folders as plot.py reads them: which folders are runs, their configs, the settings that tell
several runs apart, and how each run ended (from what its folder holds)."""

import json
import re
from pathlib import Path
from typing import Any

import torch

from logger.visualization import flat_settings
from trainer.checkpoint import RunLock
from utils.checkpoint import run_order
from utils.errors import UsageError

# How train.log says that a run ended, newest wins: (text of the line, status).
ENDINGS = (("Done. Evaluate with", "finished"), ("stopped by ", "stopped"), ("error: ", "failed"))


def is_run_dir(path: Path) -> bool:
    """A folder train.py made: its config.json and train.log (a project folder has only config.json)."""
    return (path / "config.json").is_file() and (path / "train.log").is_file()


def find_runs(paths: list[Path]) -> list[Path]:
    """Each path as a run folder, or an experiment folder (saved/<name>) as its runs, oldest first."""
    runs: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{str(path)!r} does not exist; pass a run folder (saved/<name>/<run>) or saved/<name>")
        if is_run_dir(path):
            runs.append(path)
            continue
        inside = sorted((run for run in path.iterdir() if is_run_dir(run)), key=run_order) if path.is_dir() else []
        if not inside:
            raise UsageError(
                f"{str(path)!r} is not a run folder (one holding config.json and train.log) and holds none; "
                "pass saved/<name>/<run> or saved/<name>"
            )
        runs.extend(inside)
    return list(dict.fromkeys(run.resolve() for run in runs))


def new_resume_record(run: Path, epoch: int) -> Path:
    """Where a resume at ``epoch`` that changes settings records them: config-resume-N.json, or -N-2.json,
    -N-3.json... when the run was resumed at epoch N before (a record is never overwritten)."""
    path, number = run / f"config-resume-{epoch}.json", 1
    while path.exists():
        number += 1
        path = run / f"config-resume-{epoch}-{number}.json"
    return path


def resume_records(run: Path) -> list[Path]:
    """The config-resume records of ``run``, oldest first; not a copy a file manager made of one."""
    numbered = (
        re.fullmatch(r"config-resume-(\d+)(?:-(\d+))?\.json", path.name) for path in run.glob("config-resume-*.json")
    )
    return [run / name for *_, name in sorted((int(m[1]), int(m[2] or 1), m[0]) for m in numbered if m)]


def read_config(run: Path) -> dict[str, Any]:
    """The config ``run`` last ran with: the newest config-resume record (a resume that changed settings
    writes one), else config.json."""
    path = ([run / "config.json", *resume_records(run)])[-1]
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"{str(path)!r} cannot be read ({err}); is it a run folder?") from None


def differing_settings(configs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """For each config, the settings (``optimizer.args.lr``: ``"0.01"``) whose value is not the same in
    all of them, in a stable order; empty dicts for a single run."""
    flat = [{key: str(value) for key, value in flat_settings(config).items()} for config in configs]
    keys = list(dict.fromkeys(key for settings in flat for key in settings))
    differing = [key for key in keys if len({settings.get(key, "-") for settings in flat}) > 1]
    return [{key: settings.get(key, "-") for key in differing} for settings in flat]


def run_label(run: Path, settings: dict[str, str], limit: int = 3) -> str:
    """The run folder's name and up to ``limit`` of the settings that set it apart."""
    pairs = [f"{key}={value}" for key, value in settings.items()]
    more = f", +{len(pairs) - limit} more" if len(pairs) > limit else ""
    return f"{run.name} ({', '.join(pairs[:limit])}{more})" if pairs else run.name


def run_status(run: Path, config: dict[str, Any]) -> str:
    """running (a live process holds run.lock), finished, stopped (by a signal, resumable) or failed
    (an error, or the process was killed without a word: resumable from last.pth)."""
    if RunLock(run).held():
        return "running"
    ending = last_ending(run / "train.log")
    if ending is not None:
        return ending
    last = peek_checkpoint(run / "last.pth")  # a run logging only warnings has no "Done." line
    if last is not None and "mid_epoch" in last:
        return "stopped"
    epochs = config.get("trainer", {}).get("epochs")
    return "finished" if last is not None and last.get("epoch") == epochs else "failed"


def last_ending(log: Path) -> str | None:
    """The status the last ending line of train.log gives, if it has one."""
    status = None
    with log.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            status = next((found for text, found in ENDINGS if text in line), status)
    return status


def peek_checkpoint(path: Path) -> dict[str, Any] | None:
    """A checkpoint's entries without reading its tensors (memory-mapped), or None if it is not there or unreadable."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a half-written or foreign file: the status falls back to the log
        return None
    return state if isinstance(state, dict) else None


def run_artifacts(run_dir: Path) -> list[Path]:
    """What a tracker keeps a copy of when the run ends: best.pth, config.json, and the config-resume-N.json
    record of each resume that changed settings."""
    kept = (run_dir / "best.pth", run_dir / "config.json", *resume_records(run_dir))
    return [path for path in kept if path.is_file()]
