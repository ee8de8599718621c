"""What every entry point shares: the config flags and turning errors into one line and an exit code."""

import argparse
import difflib
import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import torch.distributed as dist

from utils.dist import is_distributed
from utils.errors import CheckFailed, NonFiniteLossError, TrainingStopped, UsageError, plain_text, usage_message
from utils.victoresque import gpu_indices_advice

logger = logging.getLogger(__name__)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its mistakes as one line like every other refusal here (what is wrong, a close
    flag when there is one, where the flags are listed) and exit code 2, instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}{self._hint(message)}; see {self.prog} --help\n")

    def _hint(self, message: str) -> str:
        if not message.startswith("unrecognized arguments:"):
            return ""
        unknown = [token.partition("=")[0] for token in message.split(":", 1)[1].split() if token.startswith("--")]
        known = [option for option in self._option_string_actions if option.startswith("--")]
        for flag in unknown:
            close = difflib.get_close_matches(flag, known, n=1)
            if close:
                return f" (did you mean {close[0]}?)"
        if unknown and "--set" in self._option_string_actions:
            return "; a config key is set with --set KEY.PATH=VALUE, such as --set trainer.epochs=20"
        return ""


def add_override_flags(parser: argparse.ArgumentParser, shortcuts: tuple[str, ...] = ("device", "lr", "bs")) -> None:
    """``--set`` and ``--debug``, and the ``shortcuts`` asked for (``-d``, ``--lr``, ``--bs``)."""
    if "device" in shortcuts:
        parser.add_argument("-d", "--device", help="auto, cpu, cuda, cuda:N or mps (overrides the config's device)")
    if "lr" in shortcuts:
        parser.add_argument("--lr", type=float, help="shortcut for --set optimizer.args.lr=LR")
    if "bs" in shortcuts:
        parser.add_argument("--bs", type=int, help="shortcut for --set data_loader.args.batch_size=BS")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override any config key; VALUE is JSON (a bare word is a string); repeatable",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")


def add_checkpoint_flag(parser: argparse.ArgumentParser, metavar: str = "RUN_OR_CHECKPOINT") -> None:
    """``-r/--resume``: the trained checkpoint that test.py, predict.py and export.py start from."""
    parser.add_argument(
        "-r",
        "--resume",
        type=Path,
        required=True,
        metavar=metavar,
        help="a .pth file, a run folder (uses best.pth, else last.pth) or saved/<name> (newest run)",
    )


SHORTCUTS = {"device": "device", "lr": "optimizer.args.lr", "bs": "data_loader.args.batch_size"}


def overrides_from_flags(args: argparse.Namespace) -> list[str]:
    """``--device``, ``--lr`` and ``--bs`` as ``--set`` overrides, followed by the explicit ``--set`` ones.
    A shortcut and a ``--set`` of the same key are refused: which one was meant is not for us to guess."""
    shortcuts = [(flag, key) for flag, key in SHORTCUTS.items() if getattr(args, flag, None) is not None]
    advice = gpu_indices_advice(args.device) if getattr(args, "device", None) is not None else None
    if advice:  # pytorch-template's `-d 2,3`, which no device name here looks like
        raise UsageError(advice)
    for flag, key in shortcuts:
        if any(text.partition("=")[0].strip() == key for text in args.overrides):
            raise UsageError(f"--{flag} and --set {key}=... both set {key}; give only one of them")
    return [_override_text(flag, key, getattr(args, flag)) for flag, key in shortcuts] + list(args.overrides)


def _override_text(flag: str, key: str, value: object) -> str:
    """A shortcut as ``--set`` text. --lr is already a float: JSON writes it back exactly (inf and nan as Infinity
    and NaN, refused as such). -d goes in as a JSON string, so whatever it holds is judged as a device name,
    never blamed on a --set the user did not type."""
    return f"{key}={value}" if flag == "bs" else f"{key}={json.dumps(value)}"


@contextmanager
def warnings_held() -> Iterator[None]:
    """Hold back the warnings raised inside (torch's about a model of width 0, say) until the block ends: shown
    then if it succeeds, dropped if it raises, so that a refusal is the only line on the terminal."""
    with warnings.catch_warnings(record=True) as caught:
        yield
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def run_command(command: Callable[[], None], debug: bool) -> int:
    """Run ``command`` and return the process's exit code: 2 and one ``error:`` line for a usage
    mistake, 1 for a non-finite loss or a failed check, 128+N after a stop signal, 0 otherwise."""
    try:
        command()
    except UsageError as err:
        if debug:
            raise
        message = "error: " + usage_message(err)  # one line without escape codes, whatever the cause's text holds
        print(message, file=sys.stderr)
        log_to_files(message)
        return 2
    except NonFiniteLossError as err:
        logger.error("error: %s", err)
        return 1
    except CheckFailed as err:
        print("error: " + plain_text(str(err)), file=sys.stderr)
        return 1
    except TrainingStopped as err:
        logger.warning("%s", err)
        return err.exit_code
    except KeyboardInterrupt as err:  # Ctrl-C (or SIGTERM: utils/signals.py) before training could save anything
        number = getattr(err, "signal_number", signal.SIGINT)
        print(f"error: interrupted by {signal.Signals(number).name} before training started; nothing was saved",
              file=sys.stderr)  # fmt: skip
        return 128 + number
    finally:
        if is_distributed():
            dist.destroy_process_group()
    return 0


def log_to_files(message: str) -> None:
    """Write ``message`` to the run's train.log, if one is open (the console already has it), as this
    module's record, like a non-finite loss's: ``... ERROR utils.cli: error: ...``."""
    record = logging.LogRecord(__name__, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def check_output_folder(path: Path) -> None:
    """Refuse an output path whose folder does not exist, or that is a folder, before any work is done."""
    if path.is_dir():
        raise UsageError(f"-o {str(path)!r} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"-o {str(path)!r}: folder {str(path.parent)!r} does not exist; create it first")


def refuse_overwriting(output: Path, inputs: list[Path], what: str) -> None:
    """Refuse an output path that is one of the ``inputs`` the command reads (``what`` says which)."""
    if output.exists() and any(path.exists() and os.path.samefile(output, path) for path in inputs):
        raise UsageError(f"-o {str(output)!r} is {what}, which this would overwrite; write to another file")
