"""Exceptions a user can act on; the CLI edge prints them as one line."""


class MuraError(Exception):
    """Base class: the message is complete and safe to show as one line."""


class MuraDataError(MuraError):
    """The data on disk is missing, inconsistent or unreadable."""


class ConfigError(MuraError):
    """A setting (flag, config field) has an impossible value."""


class TrainingError(MuraError):
    """Training could not go on (for example the loss became NaN)."""


class MuraDataWarning(UserWarning):
    """Data was skipped (for example a corrupt PNG); the message counts and names it."""


class FieldError(ConfigError):
    """A config field has an impossible value: `field` names it and `problem` says why ("must
    be at least 1, got 0"). The library's message names the field; the command line's names
    the field's flag (`mura_tf.cli.configure`)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem
