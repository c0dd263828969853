"""The containers of ``SpliceTransformer.transform``'s output (``set_output``).

scikit-learn's own wrapping cannot carry sparse matrices into pandas, so the
transformer opts out of it and wraps its output here: a pandas DataFrame of
sparse columns named after the concepts, or a dense polars DataFrame.
"""

from __future__ import annotations

import scipy.sparse as sp

__all__ = ["OutputMixin"]


class OutputMixin:
    """``set_output`` for an estimator with ``get_feature_names_out``."""

    def set_output(self, *, transform=None):
        """Set the container of :meth:`transform`'s output.

        ``"pandas"`` with sparse codes gives a pandas DataFrame of sparse
        columns named after the concepts (``DataFrame.sparse.from_spmatrix``);
        ``"polars"`` needs ``sparse_output=False``.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            The output container (``None`` leaves it unchanged).

        Returns
        -------
        self : SpliceTransformer
            This estimator.
        """
        if transform is None:
            return self
        if transform not in ("default", "pandas", "polars"):
            raise ValueError(
                f"set_output(transform={transform!r}): choose 'default', 'pandas' or 'polars'."
            )
        if not hasattr(self, "_sklearn_output_config"):
            self._sklearn_output_config = {}
        self._sklearn_output_config["transform"] = transform
        return self

    def _wrap_output(self, codes, X):
        """The codes in the container ``set_output`` (or ``set_config``) asks for.

        The estimator's own ``set_output`` choice, else the global
        ``set_config(transform_output=...)`` (public API only: no
        ``sklearn.utils._set_output``).
        """
        from sklearn import get_config

        container = (getattr(self, "_sklearn_output_config", {}).get("transform")
                     or get_config()["transform_output"])
        if container == "default":
            return codes
        names = self.get_feature_names_out()
        if container == "pandas":
            import pandas as pd

            index = X.index if type(X).__module__.startswith("pandas") else None
            if sp.issparse(codes):
                frame = pd.DataFrame.sparse.from_spmatrix(codes, columns=names)
                if index is not None:
                    frame.index = index
                return frame
            return pd.DataFrame(codes, columns=names, index=index)
        if sp.issparse(codes):
            raise ValueError(
                "polars has no sparse columns, so transform_output='polars' needs "
                "SpliceTransformer(sparse_output=False) (dense codes), or use 'pandas' "
                "(sparse columns)."
            )
        import polars as pl

        return pl.DataFrame(codes, schema=[str(n) for n in names])
