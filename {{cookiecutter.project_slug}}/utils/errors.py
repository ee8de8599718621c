"""The exceptions the entry points turn into exit codes (see utils/cli.py)."""


class UsageError(Exception):
    """Something the user asked for cannot be done: a config key or value, a flag, a file, a
    checkpoint or a device. The message names it and says what to do instead; the entry point
    prints it as one line and exits with status 2."""


class TrainingStopped(Exception):
    """A stop signal ended the run after its state was saved; ``exit_code`` follows the shell's 128+N."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteLossError(Exception):
    """The loss became NaN or infinite; the message names where and what to try."""


class CheckFailed(Exception):
    """Something was produced but failed the check made right after (an export whose outputs differ
    from the model's beyond the tolerance); the entry point prints one line and exits with status 1."""
