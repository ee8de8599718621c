"""The exceptions the entry points turn into exit codes (see utils/cli.py), and the one-line form of a message."""

import re


class UsageError(Exception):
    """Something the user asked for cannot be done (a config value, a flag, a file, a checkpoint, a device);
    the message says what to do instead. The entry point prints it as one line and exits with status 2."""


class ConfigRefused(UsageError):
    """A UsageError caused by the config itself, so the same config is refused every time; any other (a file,
    a disk, a device) may pass once fixed. A sweep (sweeps/trial.py) ends on a trial whose values are refused."""


class TrainingStopped(Exception):
    """A stop signal ended the run after its state was saved; ``exit_code`` follows the shell's 128+N."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteLossError(Exception):
    """The loss became NaN or infinite; the message names where and what to try."""


class CheckFailed(Exception):
    """What was produced failed the check right after (an export whose outputs differ from the model's);
    the entry point prints one line and exits with status 1."""


# The escape sequences that colour or embolden terminal text (PyTorch puts some in its own messages).
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
# A UsageError raised in a DataLoader worker (an unreadable image file, say) reaches the main process
# as a new UsageError whose message is the worker's whole traceback; its own message is the last line.
_FROM_WORKER = re.compile(r"Original Traceback.*UsageError: (.*)\Z", re.DOTALL)


def plain_text(text: str) -> str:
    """``text`` on one line, without terminal escape codes."""
    return " ".join(_ANSI_ESCAPE.sub("", text).split())


def first_sentence(err: BaseException) -> str:
    """The whole first sentence of ``err``'s message, on one line and without escape codes (a message
    cut at its first line break can stop mid-sentence); its type's name if it has no message."""
    text = plain_text(str(err))
    if not text:
        return type(err).__name__
    return _SENTENCE_END.split(text, maxsplit=1)[0]


def usage_message(err: UsageError) -> str:
    """``err``'s message on one line, taken out of the traceback a DataLoader worker wraps it in."""
    text = str(err)
    from_worker = _FROM_WORKER.search(text)
    return plain_text(from_worker[1] if from_worker else text)
