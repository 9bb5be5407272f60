"""Exceptions that nnxp raises for problems a user can fix.

Every message is one line that names the problem and says how to fix it.
The command-line interface prints it as ``nnxp: error: <message>`` and exits
with status 2; library users can catch :class:`NnxpError` (or the familiar
built-in base each class also derives from).
"""


class NnxpError(Exception):
    """Base class: a problem with the user's input, files or environment."""


class ConfigError(NnxpError, ValueError):
    """An unknown or out-of-range setting (activation, loss, optimizer, value)."""


class ShapeError(NnxpError, ValueError):
    """Arrays of the wrong shape, dtype, or with mismatched sample counts."""


class BackendError(NnxpError, RuntimeError):
    """A device or array library that is unknown, missing or unusable."""


class DataError(NnxpError, ValueError):
    """A missing, truncated or corrupt data or model file."""


class DownloadError(DataError):
    """A file that could not be downloaded or failed its checksum."""


class DivergenceError(NnxpError, FloatingPointError):
    """Training produced a NaN or infinite loss."""
