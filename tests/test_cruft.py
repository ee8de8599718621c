"""Keeping generated projects up to date: deterministic bakes, and cruft create / update / check offline."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import EXTENDABLE, SWEEP_FILES, TEMPLATE_ROOT, describe, locked_range, run_folders, run_project

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
GIT_IDENTITY |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_baking_twice_gives_identical_files(cookies) -> None:
    answers = {"project_name": "Twice", "accelerator": "cuda", "tensorboard": False}
    first, second = cookies.bake(extra_context=answers), cookies.bake(extra_context=answers)
    assert first.exit_code == second.exit_code == 0
    assert tree(Path(first.project_path)) == tree(Path(second.project_path))
    recorded = json.loads((Path(first.project_path) / ".cookiecutter.json").read_text())
    assert recorded["accelerator"] == "cuda"
    assert {key for key in recorded if key.startswith("_")} <= {"_template", "_commit"}, "no paths or extensions"


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_IDENTITY, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, describe(result)
    return result


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def copy_template(repo: Path) -> None:
    """This template's files as git tracks them (its working tree, uncommitted edits included) into ``repo``."""
    tracked = run("git", "ls-files", "-z", cwd=TEMPLATE_ROOT).stdout.split("\0")
    for name in filter(None, tracked):
        if (TEMPLATE_ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TEMPLATE_ROOT / name, repo / name)


def commit_all(folder: Path, message: str, init: bool = False) -> None:
    for command in [["git", "init", "-q"]] * init + [["git", "add", "-A"], ["git", "commit", "-qm", message]]:
        run(*command, cwd=folder)


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """This template, committed to a local git repository (cruft works from git commits)."""
    repo = tmp_path / "template"
    copy_template(repo)
    commit_all(repo, "template v1", init=True)
    return repo


@pytest.fixture
def project(template_repo: Path, tmp_path: Path) -> Path:
    """A project made by `cruft create` and committed, as a user would keep it."""
    run("cruft", "create", "--no-input", str(template_repo), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    project = tmp_path / "out" / "mnist_classifier"
    assert json.loads((project / ".cruft.json").read_text())["template"] == str(template_repo)
    commit_all(project, "generated", init=True)
    return project


def test_template_update_arrives_and_user_edits_survive(template_repo: Path, project: Path, tmp_path: Path) -> None:
    # The user edits a template-owned file, a skipped user-owned one, and a value in config.json.
    edit(project / "train.py", '"""Train a model:', '"""Our team trains with: -d cpu. Train a model:')
    with (project / "model" / "model.py").open("a") as handle:
        handle.write('\n\nclass Wide(ConvNet):\n    """Our own model."""\n')
    edit(project / "config.json", '"epochs": 7', '"epochs": 2')
    run("git", "commit", "-qam", "our edits", cwd=project)

    # The template gains a config key (a field of parse_config.Config) and a change in the engine.
    slug = template_repo / "{{cookiecutter.project_slug}}"
    edit(slug / "config.json", '"seed": 42,', '"seed": 42,\n  "notes": "",')
    seed_field = '    seed: int = setting(42, "an integer from 0 to 2**32 - 1", lambda v: 0 <= v < 2**32)'
    edit(slug / "parse_config.py", seed_field, seed_field + '\n    notes: str = setting("", "text")')
    edit(slug / "base" / "base_trainer.py", "class BaseTrainer:", "class BaseTrainer:  # template v2")
    # ...and in the user's own files: where the user changed nothing, and away from what they changed.
    edit(slug / "model" / "model.py", '"""Models.', '"""Models (template v2).')
    edit(slug / "data_loader" / "data_loaders.py", '"""Data loaders,', '"""Data loaders (template v2),')
    edit(slug / "trainer" / "trainer.py", '"""Your Trainer,', '"""Your Trainer (template v2),')
    run("git", "commit", "-qam", "template v2", cwd=template_repo)

    assert subprocess.run(["cruft", "check"], cwd=project, capture_output=True, check=False).returncode != 0
    run("cruft", "update", "-y", cwd=project)
    assert "class BaseTrainer:  # template v2" in (project / "base" / "base_trainer.py").read_text()
    config = json.loads((project / "config.json").read_text())
    assert config["notes"] == "" and config["trainer"]["epochs"] == 2, "new key merged, user value kept"
    assert "Our team trains with: -d cpu." in (project / "train.py").read_text()
    model_file = (project / "model" / "model.py").read_text()
    assert "class Wide(ConvNet)" in model_file and '"""Models (template v2).' in model_file, "merged three-way"
    assert "(template v2)" in (project / "data_loader" / "data_loaders.py").read_text()
    assert "(template v2)" in (project / "trainer" / "trainer.py").read_text()
    assert not list(project.rglob("*.rej")) and not has_conflict_markers(model_file)
    run("cruft", "check", cwd=project)

    save_dir = json.dumps(str(tmp_path / "saved"))
    quick = ["-d", "cpu", "--set", "arch.args.width=8", "--set", f"trainer.save_dir={save_dir}"]
    trained = run_project(project, "train.py", *quick)
    assert trained.returncode == 0, describe(trained)
    assert len(run_folders(tmp_path / "saved")) == 1


def test_a_plain_cookiecutter_project_links_to_its_commit_as_the_readme_says(
    template_repo: Path, tmp_path: Path
) -> None:
    run("cookiecutter", "--no-input", str(template_repo), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    project = tmp_path / "out" / "mnist_classifier"
    generated_from = run("git", "rev-parse", "HEAD", cwd=template_repo).stdout.strip()
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert recorded["_commit"] == generated_from and recorded["_template"].startswith("gh:")
    commit_all(project, "generated", init=True)
    edit(
        template_repo / "{{cookiecutter.project_slug}}" / "base" / "base_trainer.py",
        "class BaseTrainer:",
        "class BaseTrainer:  # v2",
    )
    run("git", "commit", "-qam", "template v2", cwd=template_repo)

    # The command of docs/updating.md, pointed at the local copy of the template instead of GitHub.
    readme = (project / "docs" / "updating.md").read_text()
    [link] = [line for line in readme.splitlines() if line.startswith("cruft link ")]
    run("bash", "-c", link.replace(recorded["_template"], str(template_repo), 1), cwd=project)
    assert json.loads((project / ".cruft.json").read_text())["commit"] == generated_from
    commit_all(project, "linked")
    run("cruft", "update", "-y", cwd=project)
    assert "class BaseTrainer:  # v2" in (project / "base" / "base_trainer.py").read_text(), "the update arrived"
    assert json.loads((project / ".cookiecutter.json").read_text())["_commit"] != generated_from


def test_changing_an_answer_rewrites_only_what_depends_on_it(project: Path) -> None:
    # The user's own edits of the learning rate and batch size first: the answer must not conflict with them.
    edit(project / "config.json", '"lr": 0.05', '"lr": 0.02')
    edit(project / "config.json", '"batch_size": 64', '"batch_size": 128')
    commit_all(project, "our learning rate and batch size")
    run("cruft", "update", "-y", "--variables-to-update", '{"accelerator": "cuda"}', cwd=project)
    changed = set(run("git", "diff", "--name-only", "HEAD", cwd=project).stdout.split())
    assert changed == {".cruft.json", ".cookiecutter.json", "config.json", "README.md"}
    assert "<<<<<<<" not in (project / "config.json").read_text(), "merged without conflicts"
    config = json.loads((project / "config.json").read_text())
    trainer = config["trainer"]
    assert (config["device"], trainer["amp"], trainer["compile"]) == ("cuda", "auto", "default")
    assert config["optimizer"]["args"] == {"lr": 0.02, "weight_decay": 0, "fused": True}
    assert config["data_loader"]["args"]["batch_size"] == 128 and config["data_loader"]["args"]["prefetch_factor"] == 4
    before = run("git", "show", "HEAD:README.md", cwd=project).stdout
    after = (project / "README.md").read_text()
    assert before != after and outside_install(before) == outside_install(after), "only the install notes change"


def test_sweeps_arrive_when_asked_for_later_and_leave_when_declined(project: Path) -> None:
    assert not (project / "sweep.py").exists(), "off by default"
    run("cruft", "update", "-y", "--variables-to-update", '{"sweeps": true}', cwd=project)
    added = set(run("git", "diff", "--name-only", "--diff-filter=A", "HEAD", cwd=project).stdout.split())
    assert added == SWEEP_FILES | {"tests/test_sweep.py"}
    assert f'"{locked_range("optuna")}",' in (project / "pyproject.toml").read_text()
    assert "\nsweep: ##" in (project / "Makefile").read_text()
    helped = run_project(project, "sweep.py", "--help")
    assert helped.returncode == 0 and "--trials" in helped.stdout, describe(helped)
    commit_all(project, "with sweeps")
    run("cruft", "check", cwd=project)

    run("cruft", "update", "-y", "--variables-to-update", '{"sweeps": false}', cwd=project)
    assert not any((project / name).exists() for name in SWEEP_FILES), "the answer no takes them away again"
    assert "optuna" not in (project / "pyproject.toml").read_text()


# The template's last commit before the sweeps, mlflow and wandb answers: its projects have all three parts.
BEFORE_OPTIONAL_PARTS = "458d11297a179f35fb7548737eb7b5390272c911"


def test_a_project_from_before_the_optional_parts_keeps_sweeps_and_its_runs_as_the_readme_says(tmp_path: Path) -> None:
    known = subprocess.run(["git", "cat-file", "-e", BEFORE_OPTIONAL_PARTS], cwd=TEMPLATE_ROOT, check=False)
    if known.returncode != 0:
        pytest.skip("needs the template's git history (a full clone, not a shallow one)")
    repo = tmp_path / "template"
    repo.mkdir()
    archive = subprocess.run(["git", "archive", BEFORE_OPTIONAL_PARTS], cwd=TEMPLATE_ROOT, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True)
    commit_all(repo, "before the optional parts", init=True)
    project = tmp_path / "out" / "mnist_classifier"
    run("cruft", "create", "--no-input", str(repo), "--output-dir", str(project.parent), cwd=tmp_path)
    commit_all(project, "generated", init=True)
    assert (project / "sweep.py").is_file() and (project / "logger" / "mlflow_tracker.py").is_file()
    assert json.loads((project / "config.json").read_text())["trainer"]["tensorboard"] is True
    save_dir = json.dumps(str(tmp_path / "saved"))
    quick = ["-d", "cpu", "--set", "arch.args.width=8", "--set", f"trainer.save_dir={save_dir}"]
    first = run_project(project, "train.py", *quick, "--set", "lr_scheduler=null", "--set", "trainer.epochs=1")
    assert first.returncode == 0, describe(first)
    [old_run] = run_folders(tmp_path / "saved")

    run("git", "rm", "-rq", ".", cwd=repo)
    copy_template(repo)
    commit_all(repo, "with the optional parts")
    advice = (TEMPLATE_ROOT / "README.md").read_text().partition("**Projects generated before")[2].partition("\n\n")[0]
    assert """`cruft update --variables-to-update '{"sweeps": true}'`""" in advice, "the command the README gives"
    run("cruft", "update", "-y", "--variables-to-update", '{"sweeps": true}', cwd=project)
    assert (project / "sweep.py").is_file() and (project / "sweeps" / "trial.py").is_file(), "sweeps kept"
    assert not (project / "logger" / "mlflow_tracker.py").exists(), "a tracker not answered for is left out"
    assert not list(project.rglob("*.rej")), "no conflicts: the user changed nothing"
    conflicted = [path for path in project.rglob("*.py") if has_conflict_markers(path.read_text())]
    assert not conflicted, "no conflict markers"
    helped = run_project(project, "sweep.py", "--help")
    assert helped.returncode == 0, describe(helped)
    evaluated = run_project(project, "test.py", "-r", str(old_run), "-d", "cpu")
    assert evaluated.returncode == 0 and (old_run / "best.test.json").is_file(), describe(evaluated)

    # trainer.tensorboard became "tensorboard" in trainer.loggers; the run recorded with it keeps its curves.
    trainer = json.loads((project / "config.json").read_text())["trainer"]
    assert "tensorboard" not in trainer and trainer["loggers"] == ["csv", "tensorboard"]
    resumed = run_project(project, "train.py", "-r", str(old_run), "--set", "trainer.epochs=2")
    assert resumed.returncode == 0, describe(resumed)
    assert resumed.stderr.count("trainer.tensorboard (an earlier version's switch) is read as") == 1
    assert len(list((old_run / "val").glob("events.out.tfevents.*"))) == 2, "the resumed epoch is drawn too"


def test_mlflow_asked_for_later_arrives_turned_on_and_logs(project: Path, tmp_path: Path) -> None:
    run("cruft", "update", "-y", "--variables-to-update", '{"mlflow": true}', cwd=project)
    added = set(run("git", "diff", "--name-only", "--diff-filter=A", "HEAD", cwd=project).stdout.split())
    assert added == {"logger/mlflow_tracker.py", "tests/test_mlflow.py"}
    assert json.loads((project / "config.json").read_text())["trainer"]["loggers"] == ["csv", "tensorboard", "mlflow"]
    assert f'"{locked_range("mlflow-skinny")}",' in (project / "pyproject.toml").read_text()

    save_dir = json.dumps(str(tmp_path / "saved"))
    quick = ["-d", "cpu", "--set", "arch.args.width=8", "--set", f"trainer.save_dir={save_dir}"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracked = ["--set", "trainer.epochs=1", "--set", f"trainer.tracking_uri={uri}"]
    trained = run_project(project, "train.py", *quick, *tracked)
    assert trained.returncode == 0, describe(trained)
    [run_dir] = run_folders(tmp_path / "saved")
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"], "the run was logged to MLflow"


def has_conflict_markers(text: str) -> bool:
    return any(line.startswith("<<<<<<< ") for line in text.splitlines())


def outside_install(readme: str) -> str:
    head, _, rest = readme.partition("## Install")
    return head + rest.partition("## Train")[2]


def test_runs_from_before_an_update_still_evaluate_and_resume(
    template_repo: Path, project: Path, tmp_path: Path
) -> None:
    """A template update that adds a trainer setting and removes another, together with a changed
    answer (tensorboard), must not strand the runs trained before it."""
    save_dir = json.dumps(str(tmp_path / "saved"))
    quick = ["-d", "cpu", "--set", "arch.args.width=8", "--set", f"trainer.save_dir={save_dir}", *EXTENDABLE]
    first = run_project(project, "train.py", *quick, "--set", "trainer.epochs=1")
    assert first.returncode == 0, describe(first)
    [old_run] = run_folders(tmp_path / "saved")

    slug = template_repo / "{{cookiecutter.project_slug}}"
    log_step = '    log_step: int = setting(20, "an integer >= 1", lambda v: v >= 1)'
    edit(
        slug / "trainer" / "settings.py",
        log_step,
        log_step + '\n    warmup_epochs: int = setting(0, "an integer >= 0")',
    )
    edit(slug / "config.json", '"log_step": 20', '"log_step": 20,\n    "warmup_epochs": 0')
    run("git", "commit", "-qam", "template v2: add trainer.warmup_epochs", cwd=template_repo)
    edit(
        slug / "trainer" / "settings.py",
        '    keep_last: int = setting(3, "an integer >= 0 (0 keeps every epoch-N.pth)", lambda v: v >= 0)\n',
        "",
    )
    edit(slug / "train.py", "config.trainer.save_period, config.trainer.keep_last", "config.trainer.save_period, 0")
    edit(slug / "config.json", '    "keep_last": 3,\n', "")
    run("git", "commit", "-qam", "template v3: drop trainer.keep_last", cwd=template_repo)
    run("cruft", "update", "-y", "--variables-to-update", '{"tensorboard": false}', cwd=project)
    config = json.loads((project / "config.json").read_text())
    assert "warmup_epochs" in config["trainer"] and "keep_last" not in config["trainer"]

    evaluate = run_project(project, "test.py", "-r", str(old_run), "-d", "cpu")
    assert evaluate.returncode == 0, describe(evaluate)
    assert "trainer.keep_last" in evaluate.stderr, "the dropped key is named once"
    resume = run_project(project, "train.py", "-r", str(old_run), "--set", "trainer.epochs=2")
    assert resume.returncode == 0, describe(resume)
    assert "continuing at epoch 2" in resume.stderr
    assert resume.stderr.count("trainer.keep_last") == 1, "the dropped key is named once, not per reading"
    recorded = json.loads((old_run / "config-resume-1.json").read_text())
    assert recorded["trainer"]["warmup_epochs"] == 0 and "keep_last" not in recorded["trainer"]


def test_an_edit_of_the_same_lines_as_the_template_is_a_conflict_to_resolve_as_the_readme_says(
    template_repo: Path, project: Path
) -> None:
    loaders = "data_loader/data_loaders.py"
    edit(project / loaders, '"""Data loaders,', '"""Our data loaders,')
    commit_all(project, "our docstring")
    edit(template_repo / "{{cookiecutter.project_slug}}" / loaders, '"""Data loaders,', '"""The data loaders,')
    run("git", "commit", "-qam", "template v2", cwd=template_repo)
    subprocess.run(["cruft", "update", "-y"], cwd=project, capture_output=True, check=False)
    merged = (project / loaders).read_text()
    assert has_conflict_markers(merged) and '"""Our data loaders,' in merged and '"""The data loaders,' in merged
    readme = (project / "docs" / "updating.md").read_text()
    assert "conflict markers (`<<<<<<<`)" in readme and "delete the markers and commit" in readme
