"""Train a model: python train.py -c config.json [overrides]. See README.md for every flag."""

import argparse
import logging
import sys
from pathlib import Path

import data_loader.data_loaders
import model.loss
import model.metric
import model.model
import trainer.trainer
from logger.logger import setup_logging
from logger.trackers import check_installed, close_all, closed_on_error, forget_run, open_trackers
from trainer.build import build_trainer
from trainer.checkpoint import Checkpointer, RunLock, remove_run_dir
from trainer.run_start import RunWatcher, new_run_dir, nothing_to_do, plan_start, record_start, restore
from utils.cli import ArgumentParser, add_override_flags, run_command, warnings_held
from utils.dist import init_distributed, is_main, launched_by_torchrun, on_rank_0, rank
from utils.errors import UsageError
from utils.registry import Registry
from utils.signals import sigterm_interrupts
from utils.util import configure_backends, resolve_device

logger = logging.getLogger("train")

# The modules (yours) in which config.json's names are looked up.
PROJECT_MODULES = Registry(
    models=model.model,
    data_loaders=data_loader.data_loaders,
    losses=model.loss,
    metrics=model.metric,
    trainers=trainer.trainer,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="train.py", description=__doc__)
    parser.add_argument("-c", "--config", type=Path, help="config file (default: config.json, or the checkpoint's)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "-r",
        "--resume",
        metavar="CHECKPOINT",
        help="continue from a .pth file or run folder; 'auto' continues the newest run of this config if any",
    )
    start.add_argument("--init-from", metavar="CHECKPOINT", type=Path, help="a new run from a checkpoint's weights")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="with --init-from: unpickle a checkpoint that holds Python objects (victoresque/pytorch-template's) "
        "and take only its weights; the classes it names become inert stand-ins, never imported",
    )
    add_override_flags(parser)
    return parser.parse_args(argv)


def train(args: argparse.Namespace, modules: Registry, watcher: RunWatcher | None = None) -> Path:
    earlier = setup_logging(None)  # until the config says how much to log; kept for train.log
    start = plan_start(args, modules)
    config = start.config
    check_installed(config.trainer.loggers)  # a missing tracker package: one line, before any folder exists
    device = resolve_device(config.device)
    if launched_by_torchrun():
        device = init_distributed(device)
    earlier = setup_logging(None, config.trainer.verbosity, rank(), earlier)  # train.log does not exist yet
    if start.continue_in is not None:
        on_rank_0(RunLock(start.continue_in).acquire)  # a run that is live elsewhere: refused before anything else
    run_dir = start.continue_in
    try:
        with sigterm_interrupts():  # a scheduler's SIGTERM while starting up cleans up as Ctrl-C does
            configure_backends(device, config.deterministic)
            # Build and check all before creating the run folder: a mistake leaves nothing on disk, nor its warnings.
            with warnings_held():
                trainer = build_trainer(config, modules, device)
                restore(trainer, start)
                if (finished := trainer.finished_already()) is not None:
                    return nothing_to_do(finished, start)
                trainer.check_one_batch()
            run_dir = run_dir or on_rank_0(lambda: new_run_dir(start))
            # Only rank 0 logs; a tracker that cannot start refuses in every process, before any record is written.
            trackers = on_rank_0(lambda: open_trackers(config.to_dict(), run_dir, trainer.start_epoch), False) or []
            with closed_on_error(trackers):
                record_start(start, trainer, run_dir, earlier, watcher)
        with closed_on_error(trackers):  # trainer.loggers (logger/trackers.py) get each epoch
            trainer.fit(Checkpointer(run_dir, config.trainer.save_period, config.trainer.keep_last), trackers)
        close_all(trackers, finished=True)
    except (KeyboardInterrupt, UsageError):  # a stop or a refusal before any checkpoint: leave no run folder
        if run_dir is not None and start.continue_in is None and is_main() and not list(run_dir.glob("*.pth")):
            forget_run(run_dir)
            remove_run_dir(run_dir)
        raise
    finally:
        if run_dir is not None:
            RunLock(run_dir).release()
    logger.info("Done. Evaluate with: python test.py -r %s", run_dir)
    return run_dir


def main(argv: list[str] | None = None, modules: Registry = PROJECT_MODULES) -> int:
    args = parse_args(argv)
    return run_command(lambda: train(args, modules), args.debug)


if __name__ == "__main__":
    sys.exit(main())
