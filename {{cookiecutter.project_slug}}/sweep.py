"""Search config.json's settings with Optuna: python sweep.py -c config.json --trials N [--jobs J] [--storage URL].

What is searched is in sweep.json (see docs/sweeps.md). Each trial is an ordinary run in saved/<name>/;
the same command again continues the study; --summary prints its trials and writes best-config.json.
"""

import argparse
import importlib.util
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import train
from logger.logger import setup_logging
from logger.trackers import check_installed
from parse_config import load_config
from utils.cli import ArgumentParser, add_override_flags, overrides_from_flags, run_command
from utils.errors import TrainingStopped, UsageError, first_sentence
from utils.registry import Registry

logger = logging.getLogger("sweep")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="sweep.py", description=__doc__)
    parser.add_argument("-c", "--config", type=Path, default=Path("config.json"), help="every trial's config")
    parser.add_argument("--space", type=Path, help="the search space (default: sweep.json beside the config)")
    parser.add_argument("--trials", type=int, help="finished (complete or pruned) trials the study should hold")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes on this machine (default 1)")
    parser.add_argument("--storage", help="a database URL shared by several machines (default: a journal file in "
                        "saved/<name>/), e.g. postgresql://user:password@host/db")  # fmt: skip
    parser.add_argument("--study", help="the study's name (default: the config's name)")
    parser.add_argument("--summary", action="store_true", help="print the trials, write best-config.json")
    parser.add_argument("--share", type=int, help=argparse.SUPPRESS)  # a worker's number of trials (sweeps/workers.py)
    parser.add_argument("--registry", help=argparse.SUPPRESS)  # the modules config.json's names come from, for workers
    add_override_flags(parser)
    return parser.parse_args(argv)


@dataclass
class SweepPlan:
    """Everything checked before the first trial: the config, the space, the metric and the open study."""

    config_path: Path
    overrides: list[str]
    space_path: Path  # sweep.json, or the file --space names
    trainer: Any  # the config's TrainerSettings
    spec: Any  # sweeps.space.SweepSpec
    metric: str
    experiment_dir: Path
    study: Any  # optuna.Study


def plan_sweep(args: argparse.Namespace, modules: Registry) -> SweepPlan:
    from sweeps.space import check_space, check_space_apart, read_spec
    from sweeps.study import engine_parts, fail_abandoned_trials, open_study, route_optuna_logs, storage_for

    check_flags(args)
    overrides = overrides_from_flags(args)
    config = load_config(args.config, overrides, registry=modules)
    check_installed(config.trainer.loggers)  # a tracker's package: one line now, not in every trial
    space_path = args.space or args.config.parent / "sweep.json"
    spec = read_spec(space_path)
    sweeping = not args.summary and args.share is None  # this command runs the sweep (not --summary, nor a worker)
    if sweeping and args.jobs > 1 and torch.cuda.is_available():  # asking makes no CUDA context
        # This process only supervises the workers: a CUDA context its builds made (on the GPU, or for pinned
        # memory with a CPU config) would stay here all sweep long.
        check_space_apart(spec, args.config, overrides, modules, str(space_path))
    else:
        check_space(spec, args.config, overrides, modules, str(space_path), build=sweeping)
    metric, monitor = sweep_metric(spec, config, space_path)
    experiment_dir = Path(config.trainer.save_dir) / config.name
    route_optuna_logs()
    pruner, sampler = engine_parts(spec, str(space_path))
    if "mlflow" in config.trainer.loggers and sweeping:
        create_tracking_store(config.trainer, config.name)  # before the study: a refusal leaves none behind
    storage = storage_for(args.storage, experiment_dir, create=not args.summary)
    study = open_study(storage, args.study or config.name, monitor, pruner, sampler, not args.summary, bool(args.study))
    fail_abandoned_trials(study)
    return SweepPlan(args.config, overrides, space_path, config.trainer, spec, metric, experiment_dir, study)


def sweep_metric(spec: Any, config: Any, space_path: Path) -> tuple[str, Any]:
    """The metric the sweep optimizes ("min val_loss"...) and its Monitor: sweep.json's, else trainer.monitor."""
    from base.base_data_loader import LoaderSettings
    from trainer.monitor import Monitor, measured_names

    metric = spec.metric or config.trainer.monitor
    monitor = Monitor.parse(metric)
    if not monitor.enabled:  # sweep.json's metric is never 'off' (sweeps/space.py): this is trainer.monitor's
        raise UsageError(f"{space_path}: metric is null and trainer.monitor is 'off'; set one, e.g. \"min val_loss\"")
    split = config.data_loader.args.get("validation_split", LoaderSettings.validation_split)
    monitor.check(measured_names(config.metrics, validates=split != 0), f"{space_path}: metric")
    return metric, monitor


def create_tracking_store(settings: Any, experiment_name: str) -> None:
    """MLflow's tracking store and experiment, made once here: --jobs workers starting together would each try
    and collide, and a URI MLflow cannot use is one line now instead of a traceback or a failure in every trial."""
    from logger.mlflow_tracker import create_store, tracking_uri

    try:
        create_store(settings.tracking_uri, experiment_name)
    except Exception as err:  # an unknown scheme, a server that does not answer, a database it cannot write...
        uri = tracking_uri(settings.tracking_uri)
        source = "trainer.tracking_uri" if settings.tracking_uri else "MLFLOW_TRACKING_URI"
        without = json.dumps([name for name in settings.loggers if name != "mlflow"])
        raise UsageError(
            f"{source} {uri!r}: MLflow cannot use it ({first_sentence(err)[:300]}); give a database URL such as "
            f"sqlite:///mlflow.db or an http(s):// server, or run without MLflow: --set trainer.loggers='{without}'"
        ) from None


def check_flags(args: argparse.Namespace) -> None:
    """The flags' own mistakes, before anything is read or opened (opening a study creates it)."""
    for flag, value in (("--trials", args.trials), ("--jobs", args.jobs)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: expected a number >= 1")
    if args.trials is None and not args.summary:
        raise UsageError("--trials N: how many finished trials the study should hold (or --summary to look at it)")
    study = args.study or ""
    separator = next((char for char in "/\\" if char in study), None)
    if separator is not None:  # the name goes into best-config-NAME.json: a separator would point into a folder
        other = study.replace("/", "-").replace("\\", "-")
        raise UsageError(f"--study {study!r}: a study's name is part of a file name (best-config-NAME.json), "
                         f"so it cannot hold {separator!r}; use another, such as {other!r}")  # fmt: skip


def sweep(args: argparse.Namespace, modules: Registry) -> None:
    setup_logging(None)
    _require_optuna()
    plan = plan_sweep(args, modules)
    if args.summary:
        return report(plan)
    from sweeps.study import REFUSED, finished_count
    from sweeps.trial import run_trials
    from sweeps.workers import run_workers, shares

    if args.share is not None:  # a worker started by --jobs
        return run_share(plan, modules, args)
    remaining = args.trials - finished_count(plan.study)
    logger.info("Study %r: %d of %d trials finished", plan.study.study_name, args.trials - remaining, args.trials)
    plan.study.set_user_attr(REFUSED, None)  # an earlier command's refusal, fixed since: it no longer stops workers
    if remaining > 0 and args.jobs == 1:
        run_trials(plan.study, objective(plan, modules), remaining, args.trials)
    elif remaining > 0:
        code = run_workers(Path(__file__), worker_argv(args, plan, modules), shares(remaining, args.jobs))
        refusal = plan.study.user_attrs.get(REFUSED)
        if refusal:  # the workers stayed silent about it (run_share): said once here, for all of them
            raise UsageError(refusal)
        if code != 0:
            report(plan)
            raise TrainingStopped(f"a worker ended with exit code {code}; run the same command to continue", code)
    report(plan)


def run_share(plan: SweepPlan, modules: Registry, args: argparse.Namespace) -> None:
    """A --jobs worker's trials. A refused trial ends the worker with exit code 2 and no line of its own: the
    refusal is in the study, and the parent prints it once however many workers met it. Any other UsageError
    (a full disk, a tracker that cannot start) is this worker's own: it prints it, as the parent cannot."""
    from sweeps.trial import TrialRefused, run_trials

    try:
        run_trials(plan.study, objective(plan, modules), args.share, args.trials)
    except TrialRefused:
        raise SystemExit(2) from None


def objective(plan: SweepPlan, modules: Registry) -> Any:
    """Optuna's objective for this sweep: each trial runs train.py's ``train`` with the modules given."""
    from sweeps.trial import make_objective

    base_argv = ["-c", str(plan.config_path), *(arg for text in plan.overrides for arg in ("--set", text))]
    base_argv += ["--set", f"trainer.monitor={plan.metric}"]  # best.pth and early stopping follow the sweep metric
    return make_objective(lambda argv, watcher: train.train(train.parse_args(argv), modules, watcher),
                          base_argv, plan.spec, plan.metric, str(plan.space_path))  # fmt: skip


def worker_argv(args: argparse.Namespace, plan: SweepPlan, modules: Registry) -> list[str]:
    """This command for one worker: the same config, space, study and overrides, and the same modules."""
    argv = ["-c", str(plan.config_path), "--trials", str(args.trials), "--study", plan.study.study_name]
    argv += ["--space", str(plan.space_path)]
    argv += ["--storage", args.storage] if args.storage else []
    argv += [arg for text in plan.overrides for arg in ("--set", text)]
    return [*argv, "--registry", modules.module_names()]


def report(plan: SweepPlan) -> None:
    """Print the table of trials; write and name best-config.json."""
    from sweeps.study import summary_table, write_best_config

    print(summary_table(plan.study, [param.key for param in plan.spec.params]))
    best = write_best_config(plan.study, plan.experiment_dir, plan.experiment_dir.name)
    if best is not None:
        trial = plan.study.best_trial
        print(f"Best: trial {trial.number}, {plan.metric} = {trial.value:.4g}; its config: {best}")
        print(f"Train it: python train.py -c {best}")


def _require_optuna() -> None:
    if importlib.util.find_spec("optuna") is None:
        raise UsageError("sweep.py needs Optuna (the optuna package); pip install -e .")


def registry_from(names: str | None) -> Registry | None:
    """The registry a worker was handed as module names (models, data loaders, losses, metrics)."""
    return Registry.imported(names) if names else None


def main(argv: list[str] | None = None, modules: Registry = train.PROJECT_MODULES) -> int:
    args = parse_args(argv)
    return run_command(lambda: sweep(args, registry_from(args.registry) or modules), args.debug)


if __name__ == "__main__":
    sys.exit(main())
