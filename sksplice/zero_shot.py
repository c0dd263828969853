"""``ZeroShotClassifier``: CLIP's zero-shot head as a scikit-learn classifier.

CLIP classifies an embedding ``x`` by its cosine with one text embedding per
class (the "zero-shot head"): ``predict(x) = argmax_k cos(x, t_k)``.  Each
``t_k`` is the unit-norm mean of the unit-norm embeddings of the class name in
every prompt template ("a photo of a {}.", ...), the way CLIP's ImageNet head
is built.  The classifier takes the head ready-made (``class_embeddings``) or
builds it from class names with an encoder and :data:`IMAGENET_TEMPLATES`.

It composes with the other estimators: after a
``ConceptEditor(st, output="embedding")`` it classifies SpLiCE reconstructions,
and with ``remove=[...]`` it measures what removing concepts does to zero-shot
predictions (the SpLiCE paper's intervention experiment).
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from . import _defaults
from ._inputs import INPUT_KINDS, as_rows, check_embeddings, guess_kind
from .core import normalize_rows

__all__ = ["IMAGENET_TEMPLATES", "ZeroShotClassifier", "build_class_embeddings"]

#: CLIP's 80 ImageNet prompt templates (Radford et al. 2021, the zero-shot notebook).
IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.",
    "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.",
    "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.",
    "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.",
    "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a painting of the {}.", "a painting of a {}.", "a pixelated photo of the {}.",
    "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.",
    "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.",
    "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.",
    "the origami {}.", "the {} in a video game.", "a sketch of a {}.",
    "a doodle of the {}.", "a origami {}.", "a low resolution photo of a {}.",
    "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.",
    "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.",
    "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.",
    "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.",
    "art of the {}.", "a drawing of the {}.", "a photo of the large {}.",
    "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.",
    "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
)


def _check_templates(templates):
    """``templates`` as a tuple of strings with one ``{}`` each."""
    if isinstance(templates, str):
        templates = IMAGENET_TEMPLATES if templates == "imagenet" else (templates,)
    templates = tuple(templates)
    if not templates:
        raise ValueError("templates is empty; pass 'imagenet' or a list such as ['a photo "
                         "of a {}.'].")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(
                f"template {t!r} must be a string with exactly one '{{}}' where the class "
                "name goes, e.g. 'a photo of a {}.'."
            )
    return templates


def build_class_embeddings(classes, encoder, templates="imagenet", *, batch_size=256):
    """CLIP's zero-shot head: one unit-norm text embedding per class.

    Every class name is put in every template and encoded; the unit-norm
    embeddings of a class are averaged and the mean is normalised again.

    Parameters
    ----------
    classes : sequence of str of length n_classes
        Class names as they read in a sentence ("golden retriever").
    encoder : Encoder or object with ``encode_texts``
        The CLIP model (e.g. ``sksplice.get_encoder("ViT-B-32:openai")``).
    templates : "imagenet", str or sequence of str, default="imagenet"
        Prompt templates with one ``{}``; ``"imagenet"`` is CLIP's 80
        (:data:`IMAGENET_TEMPLATES`), one string is a single template.
    batch_size : int, default=256
        Texts encoded at once.

    Returns
    -------
    class_embeddings : ndarray of shape (n_classes, embed_dim)
        Unit-norm rows, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.zero_shot import build_class_embeddings
    >>> class Letters:  # a toy text encoder: letter counts of a, b, c
    ...     def encode_texts(self, texts, batch_size=256):
    ...         return np.array([[t.count(c) for c in "abc"] for t in texts], float)
    >>> build_class_embeddings(["a", "b"], Letters(), "{}")
    array([[1., 0., 0.],
           [0., 1., 0.]])
    """
    templates = _check_templates(templates)
    names = [str(c) for c in classes]
    if not names:
        raise ValueError("classes is empty; pass at least one class name.")
    texts = [t.format(name) for name in names for t in templates]
    E = normalize_rows(np.asarray(encoder.encode_texts(texts, batch_size=batch_size),
                                  dtype=np.float64))
    E = E.reshape(len(names), len(templates), -1).mean(axis=1)
    return normalize_rows(E)


class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """Classify CLIP embeddings by their cosine with one text embedding per class.

    ``predict`` returns the class of largest cosine, ``predict_proba`` the
    softmax of ``logit_scale * cosine`` (CLIP's own probabilities).  Nothing
    is learnt from data: ``fit`` prepares the class embeddings and checks
    that the labels, if given, are among the classes.

    Parameters
    ----------
    class_embeddings : array-like of shape (n_classes, n_features), default=None
        The zero-shot head, one row per class (normalised in ``fit``); e.g.
        the transposed ImageNet head of CLIP.  ``None`` builds it from
        ``classes`` with ``encoder`` and ``templates``.
    classes : array-like of shape (n_classes,), default=None
        The class labels, in row order.  With ``class_embeddings``, ``None``
        means ``0 .. n_classes - 1``; without, the class names to encode.
    encoder : str, tuple, Encoder or object, default=None
        The CLIP model (any spec :func:`sksplice.get_encoder` takes): builds
        the head from class names and encodes image or text inputs.  Not
        needed for embeddings with ``class_embeddings`` given.
    templates : "imagenet", str or list of str, default="imagenet"
        Prompt templates for class names (one ``{}`` each); ``"imagenet"``
        is CLIP's 80 (:data:`IMAGENET_TEMPLATES`).
    logit_scale : float, default=100.0
        Temperature of ``predict_proba``: CLIP's learnt scale is 100.
    input : {"auto", "embedding", "image", "text"}, default="auto"
        What ``X`` holds, as in :class:`~sksplice.SpliceTransformer`:
        numeric arrays (numpy, torch, pandas/polars columns) are embeddings,
        image paths, PIL images and uint8 arrays are images, text must be
        asked for.
    device : str, default="auto"
        Device of the encoder.
    batch_size : int, default=256
        Texts or images encoded at once.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, in the order of the columns of
        ``predict_proba``.
    class_embeddings_ : ndarray of shape (n_classes, n_features)
        Unit-norm class embeddings (float64).
    n_features_in_ : int
        Embedding dimension.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of a DataFrame of embeddings passed to ``fit``.

    See Also
    --------
    sksplice.editing.ConceptEditor : Edit or reconstruct embeddings before classifying.
    sksplice.analysis.sparsity_sweep : Zero-shot accuracy of reconstructions over ``l1``.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import ZeroShotClassifier
    >>> head = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> clf = ZeroShotClassifier(head, classes=["cat", "dog"]).fit(np.eye(3))
    >>> clf.predict([[0.9, 0.1, 0.3], [0.2, 0.8, 0.0]])
    array(['cat', 'dog'], dtype='<U3')
    >>> np.round(clf.predict_proba([[0.9, 0.1, 0.3]]), 3)
    array([[1., 0.]])
    """

    _doc_link_module = "sksplice"
    _doc_link_template = _defaults.API_PAGE_TEMPLATE

    _parameter_constraints: dict = {
        "class_embeddings": ["array-like", None],
        "classes": ["array-like", None],
        "encoder": "no_validation",
        "templates": [str, list, tuple],
        "logit_scale": [Interval(numbers.Real, 0, None, closed="neither")],
        "input": [StrOptions(set(INPUT_KINDS))],
        "device": [str],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, class_embeddings=None, *, classes=None, encoder=None,
                 templates="imagenet", logit_scale=100.0, input="auto", device="auto",
                 batch_size=256):
        self.class_embeddings = class_embeddings
        self.classes = classes
        self.encoder = encoder
        self.templates = templates
        self.logit_scale = logit_scale
        self.input = input
        self.device = device
        self.batch_size = batch_size

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Prepare the class embeddings and check the labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), images, texts or None
            Validated only (no image or text is encoded here).
        y : array-like of shape (n_samples,), default=None
            Labels; each must be one of the classes.

        Returns
        -------
        self : ZeroShotClassifier
            The fitted classifier.
        """
        E, classes = self._head()
        X_emb = kind = None
        if X is not None:
            rows = as_rows(X)
            kind = self.input if self.input != "auto" else guess_kind(rows)
            if kind == "embedding":
                X_emb = check_embeddings(rows)
                self._check_dimension(X_emb.shape[1], E.shape[1])
        if y is not None:
            y = column_or_1d(np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y),
                             warn=True)
            y_type = type_of_target(y, input_name="y")
            if y_type not in ("binary", "multiclass"):
                # check_classification_targets' test, without its warning for many classes
                # (one sample per class is normal here: e.g. the class texts themselves)
                raise ValueError(
                    f"Unknown label type: {y_type}. y must hold class labels (one per "
                    "sample), not continuous values or several outputs."
                )
            n = X_emb.shape[0] if X_emb is not None else len(rows) if X is not None else None
            if n is not None and n != y.shape[0]:
                raise ValueError(
                    f"X has {n} samples but y has {y.shape[0]}; pass one label per sample."
                )
            self._check_labels(y, classes)
        if X_emb is not None:
            validate_data(self, _named(X, X_emb), reset=True, skip_check_array=True)
        else:
            self.n_features_in_ = E.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        self.class_embeddings_ = E
        self.classes_ = classes
        self.input_kind_ = kind or self.input
        return self

    def cosine(self, X):
        """Cosine of each sample with each class embedding.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images or texts
            Inputs (see ``input``).

        Returns
        -------
        cosines : ndarray of shape (n_samples, n_classes)
            ``normalize(x) . t_k``, one column per entry of ``classes_``.
        """
        check_is_fitted(self, "class_embeddings_")
        X_emb = normalize_rows(np.asarray(self._embed(X), dtype=np.float64))
        return X_emb @ self.class_embeddings_.T

    def decision_function(self, X):
        """The cosines with the class embeddings (scikit-learn's binary convention for 2).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images or texts
            Inputs (see ``input``).

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            The cosines (:meth:`cosine`); with two classes, as scikit-learn's
            binary classifiers do, one column: the cosine with
            ``classes_[1]`` minus the cosine with ``classes_[0]``.
        """
        cos = self.cosine(X)
        if cos.shape[1] == 2:
            return cos[:, 1] - cos[:, 0]
        return cos

    def predict(self, X):
        """The class of largest cosine.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images or texts
            Inputs (see ``input``).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Entries of ``classes_`` (the first one on ties).
        """
        cos = self.cosine(X)
        return self.classes_[np.argmax(cos, axis=1)]

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images or texts
            Inputs (see ``input``).

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            ``log_softmax(logit_scale * cosine)``.
        """
        from scipy.special import log_softmax

        return log_softmax(self.logit_scale * self.cosine(X), axis=1)

    def predict_proba(self, X):
        """CLIP's class probabilities, ``softmax(logit_scale * cosine)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images or texts
            Inputs (see ``input``).

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to one; columns follow ``classes_``.
        """
        from scipy.special import softmax

        return softmax(self.logit_scale * self.cosine(X), axis=1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.target_tags.required = False
        tags.classifier_tags.poor_score = True
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        for name in ("_encoder_obj", "_encoder_spec"):
            state.pop(name, None)
        return state

    # --------------------------------------------------------- internals
    def _get_encoder(self, why):
        if self.encoder is None:
            raise ValueError(
                f"{why} needs a CLIP model: pass encoder=... (e.g. 'ViT-B-32:openai'), or "
                "pass class_embeddings and embeddings instead."
            )
        spec = getattr(self, "_encoder_spec", None)
        if spec is None or spec[0] is not self.encoder or spec[1] != self.device:
            from .encoders import get_encoder

            self._encoder_obj = get_encoder(self.encoder, device=self.device)
            self._encoder_spec = (self.encoder, self.device)
        return self._encoder_obj

    def _head(self):
        """(unit-norm class embeddings, class labels) from the parameters."""
        if self.class_embeddings is None:
            if self.classes is None:
                raise ValueError(
                    "pass class_embeddings (n_classes, n_features), or class names "
                    "classes=[...] with an encoder to build them from prompt templates."
                )
            classes = _as_labels(self.classes)
            enc = self._get_encoder("building class embeddings from class names")
            E = build_class_embeddings(classes, enc, self.templates,
                                       batch_size=self.batch_size)
            return E, classes
        E = self.class_embeddings
        if type(E).__module__.split(".")[0] == "torch":
            E = as_rows(E)
        E = check_array(E, dtype=np.float64)
        norms = np.linalg.norm(E, axis=1)
        if np.any(norms == 0):
            raise ValueError(
                f"class_embeddings row {int(np.flatnonzero(norms == 0)[0])} is all zero; "
                "every class needs a direction."
            )
        if self.classes is None:
            classes = np.arange(E.shape[0])
        else:
            classes = _as_labels(self.classes)
            if classes.shape[0] != E.shape[0]:
                raise ValueError(
                    f"classes has {classes.shape[0]} labels but class_embeddings has "
                    f"{E.shape[0]} rows; pass one label per row."
                )
        return normalize_rows(E), classes

    @staticmethod
    def _check_dimension(n_features, d):
        if n_features != d:
            raise ValueError(
                f"X has {n_features} features, but ZeroShotClassifier is expecting {d} "
                "features as input: the embeddings and the zero-shot head come from "
                "different CLIP models; encode both with the same model."
            )

    @staticmethod
    def _check_labels(y, classes):
        known = set(classes.tolist())
        unknown = [v for v in np.unique(y).tolist() if v not in known]
        if unknown:
            shown = ", ".join(repr(v) for v in unknown[:5])
            raise ValueError(
                f"y holds labels that are not among the {len(known)} classes: {shown}"
                f"{' ...' if len(unknown) > 5 else ''}. A zero-shot classifier predicts "
                f"only its classes ({', '.join(repr(c) for c in classes[:5].tolist())}"
                f"{' ...' if len(known) > 5 else ''}); pass classes= in the labels' terms."
            )

    def _embed(self, X):
        """Validated embeddings of ``X`` (encoded when it holds images or texts)."""
        rows = as_rows(X)
        kind = self.input if self.input != "auto" else guess_kind(rows)
        d = self.class_embeddings_.shape[1]
        if kind == "embedding":
            X_emb = check_embeddings(rows)
            self._check_dimension(X_emb.shape[1], d)
            if hasattr(self, "feature_names_in_") or hasattr(X, "columns"):
                validate_data(self, _named(X, X_emb), reset=False, skip_check_array=True)
            return X_emb
        if isinstance(rows, np.ndarray) and kind == "image" and rows.ndim == 3:
            rows = rows[None]
        if len(rows) == 0:
            raise ValueError(f"X is empty: pass at least one {kind}.")
        enc = self._get_encoder(f"classifying {kind}s")
        if kind == "image":
            X_emb = enc.encode_images(rows, batch_size=self.batch_size)
        else:
            X_emb = enc.encode_texts([str(t) for t in rows], batch_size=self.batch_size)
        X_emb = check_array(np.asarray(X_emb), dtype=[np.float64, np.float32])
        self._check_dimension(X_emb.shape[1], d)
        return X_emb


def _as_labels(classes):
    labels = as_rows(classes) if not isinstance(classes, str) else None
    if labels is None:
        raise ValueError(f"classes={classes!r} is one string; pass a list of class labels.")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"classes must be a non-empty 1-D list of labels; got shape "
                         f"{labels.shape}.")
    values, counts = np.unique(labels, return_counts=True)
    if values.size != labels.size:
        dup = ", ".join(repr(v) for v in values[counts > 1][:5].tolist())
        raise ValueError(
            f"classes holds duplicate labels ({dup}); each class needs its own label: rename "
            "them, or pass classes=None (labels 0 .. n_classes - 1) and map to names after."
        )
    return labels


def _named(X, X_emb):
    """``X`` when it is a frame whose columns are the embedding's (for feature names)."""
    if hasattr(X, "columns") and X.shape[1] == X_emb.shape[1]:
        return X
    return X_emb
