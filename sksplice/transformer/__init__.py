"""``SpliceTransformer`` and its function form ``splice_encode``."""

from ..exceptions import CenteringWarning
from ._estimator import SpliceTransformer
from ._function import splice_encode

__all__ = ["CenteringWarning", "SpliceTransformer", "splice_encode"]

# documented, pickled and validated under their public path
SpliceTransformer.__module__ = __name__
splice_encode.__module__ = __name__
