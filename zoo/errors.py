"""Errors zoo raises for problems a user can fix (bad names, missing weights, bad files).

The CLI prints these as one clear message instead of a traceback.
"""


class ZooError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in zoo."""


class UnknownModelError(ZooError, KeyError):
    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


class WeightsError(ZooError):
    """Weights could not be found, downloaded or verified."""


class HashMismatchError(WeightsError):
    pass


class DataError(ZooError, ValueError):
    """Input data (images, folders) cannot be used."""


class OptionError(ZooError, ValueError):
    """An option (a CLI flag, a keyword argument) with a value zoo cannot use."""
