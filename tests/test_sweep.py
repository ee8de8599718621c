"""sweep.py in a freshly generated project: the shipped sweep.json searches the sample with two workers,
and the best-config.json it writes trains."""

import json
from pathlib import Path

from helpers import describe, run_project


def test_the_shipped_space_sweeps_with_two_workers_and_its_best_config_trains(
    sweeps_project: Path, tmp_path: Path
) -> None:
    save_dir = tmp_path / "saved"
    settings = ["--set", f"trainer.save_dir={json.dumps(str(save_dir))}", "--set", "trainer.epochs=1", "-d", "cpu"]
    swept = run_project(sweeps_project, "sweep.py", "-c", "config.json", "--trials", "3", "--jobs", "2", *settings)
    assert swept.returncode == 0, describe(swept)
    experiment = save_dir / "mnist_classifier"
    assert (experiment / "sweep.journal").is_file()
    assert len([line for line in swept.stdout.splitlines() if " complete " in line or " pruned " in line]) == 3
    best = experiment / "best-config.json"
    searched = json.loads(best.read_text())
    assert searched["arch"]["args"]["width"] in (8, 16, 24)
    trained = run_project(sweeps_project, "train.py", "-c", str(best), "--set", "trainer.epochs=1", "-d", "cpu")
    assert trained.returncode == 0, describe(trained)
