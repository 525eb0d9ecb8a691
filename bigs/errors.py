"""The project's error types.

Every error a user can cause (bad input ids, a config that does not fit a checkpoint,
a malformed data file) is raised as one of these, with a message that names the offending
value and what was expected. They subclass ValueError so that code written against the
original (which raised ValueError or AssertionError) still catches them.
"""


class BiGSError(ValueError):
    """Base class for errors caused by user input."""


class ConfigError(BiGSError):
    """A config value has the wrong type or an impossible value."""


class InputError(BiGSError):
    """Model inputs are malformed: ids out of range, too long, shapes that disagree."""


class CheckpointError(BiGSError):
    """A checkpoint cannot be read, or does not fit the model it is loaded into."""


class DataError(BiGSError):
    """A data file is missing, malformed, or lacks a needed column."""


class RunMismatchError(BiGSError):
    """A resumed run's settings or checkpoint do not match the command: it is another run."""


class NonFiniteError(BiGSError):
    """Training produced a NaN or infinite loss, gradient, parameter or prediction."""
