"""Every exception and warning sksplice raises, in one place.

Each subclasses the Python or scikit-learn class users already catch:
:class:`DownloadError` is an :class:`OSError`, the warnings are
:class:`UserWarning` subclasses (filter them with :mod:`warnings`).
"""

from __future__ import annotations

__all__ = [
    "BadImageError",
    "CenteringWarning",
    "DegenerateInputWarning",
    "DownloadError",
    "FolderInUseError",
    "ModelMismatchWarning",
]


class DownloadError(OSError):
    """A reference data file could not be downloaded, or its digest did not match."""


class CenteringWarning(UserWarning):
    """Inputs are centred on the fit data's own mean for lack of a reference mean."""


class ModelMismatchWarning(UserWarning):
    """Inputs are encoded by another CLIP model than the dictionary or mean came from."""


class DegenerateInputWarning(UserWarning):
    """Some input rows carry no direction (zero, or too small or large a norm) to decompose."""


class BadImageError(ValueError):
    """An image file could not be read (raised only when unreadable files are not skipped)."""


class FolderInUseError(OSError):
    """Another process is writing the same output folder (its lock file is held)."""
