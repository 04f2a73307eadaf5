"""Feature imputation for pandas DataFrames, shared by pipeline components.

:func:`impute` fills missing values in one call; :class:`Imputer` learns per-column
fill values on a training frame, applies them to other frames and round-trips
through JSON, so a pipeline step can fit once and ship the fitted state to the
steps (or images) that transform later. Every function returns a new frame and
never changes non-null values.
"""

from tabular._impute import JSON_FORMAT, JSON_VERSION, Imputer, NotFittedError, impute
from tabular._learn import STRATEGIES
from tabular._values import Scalar

__all__ = [
    "JSON_FORMAT",
    "JSON_VERSION",
    "STRATEGIES",
    "Imputer",
    "NotFittedError",
    "Scalar",
    "impute",
]
