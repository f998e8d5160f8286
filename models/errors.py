"""Named errors of :mod:`sbiserve.models`.

Every error a caller can cause derives from :class:`ModelError`, so a service can turn
them into a 4xx answer with the message unchanged; the message always says what was
wrong and where (which argument, which row or dimension).
"""


class ModelError(Exception):
    """Base class of every error caused by the caller's input or configuration."""


class ShapeError(ModelError, ValueError):
    """A tensor has the wrong number of dimensions or the wrong feature size."""


class NonFiniteError(ModelError, ValueError):
    """Training or conditioning data contains NaN or infinite values."""


class OutOfSupportError(ModelError, ValueError):
    """Parameters lie outside the prior box the estimator was built with."""


class ConfigError(ModelError, ValueError):
    """An unknown family, an unknown hyperparameter, or a value out of its range."""


class NoDensityError(ModelError, NotImplementedError):
    """The family is a pure generator and has no (estimate of its) density."""


class TrainingCancelled(ModelError):
    """The caller's cancellation check asked the training loop to stop."""


class ManifestError(ModelError, ValueError):
    """A saved estimator is incomplete, corrupted or from an incompatible version."""
