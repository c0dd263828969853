"""The reference's helpers: ``decompose_image/dataset/classes``, ``get_tokenizer/preprocess``."""

from __future__ import annotations

from ..encoders import ENCODER_ALIASES, canonical_name
from ._model import load

#: What the reference's helpers load when no model is given (its own defaults).
_DEFAULT_MODEL = "open_clip:ViT-B-32"
_DEFAULT_L1 = 0.15


def _model_or_default(splicemodel, device):
    if splicemodel is not None:
        return splicemodel.eval()
    return load(_DEFAULT_MODEL, vocabulary="laion", vocabulary_size=-1, l1_penalty=_DEFAULT_L1,
                device=device)


def _weights_and_cosine(model, images):
    """``encode_image`` with weights and the summed cosine, the model's flags left as they were."""
    saved = model.return_weights, model.return_cosine
    model.return_weights = model.return_cosine = True
    try:
        weights, cosine = model.encode_image(images)
    finally:
        model.return_weights, model.return_cosine = saved
    return weights, float(cosine)


def _l0(weights):
    """Nonzero weights summed over the rows (``vector_norm(ord=0)`` of each row, summed)."""
    return float((weights != 0).sum())


def decompose_image(image, splicemodel=None, device="cpu"):
    """The concept weights of one image, with their L0 norm and cosine, as the reference's.

    Parameters
    ----------
    image : torch.Tensor of shape (1, 3, H, W) or (1, d), or images
        A preprocessed image batch (see :func:`get_preprocess`), a CLIP
        embedding, or anything :meth:`SPLICE.encode_image` takes.
    splicemodel : SPLICE, default=None
        The model (``None``: the reference's default, ``load("open_clip:ViT-B-32",
        "laion", vocabulary_size=-1, l1_penalty=0.15)``).
    device : str, default="cpu"
        The device of the default model (a given model keeps its own).

    Returns
    -------
    weights : torch.Tensor of shape (1, n_concepts)
        The sparse concept weights.
    l0_norm : float
        Their number of nonzero weights.
    cosine : float
        The cosine between the CLIP embedding and its SpLiCE reconstruction.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.compat import SPLICE, decompose_image
    >>> C = np.eye(4)
    >>> model = SPLICE(np.zeros(4), C, l1_penalty=0.01, device="cpu")
    >>> weights, l0, cosine = decompose_image(np.array([[3.0, 1.0, 0.0, 0.0]]), model)
    >>> weights.shape, l0, round(cosine, 3)
    (torch.Size([1, 4]), 2.0, 1.0)
    """
    model = _model_or_default(splicemodel, device)
    weights, cosine = _weights_and_cosine(model, image)
    return weights, _l0(weights), cosine


def _images_of(batch):
    """A batch's images: the first item of an ``(images, labels)`` pair, else the batch."""
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def _n_rows(images):
    return images.shape[0] if hasattr(images, "shape") else len(images)


def decompose_dataset(dataloader, splicemodel=None, device="cpu"):
    """The mean concept weights over a dataset, with the mean L0 norm and cosine.

    As the reference's ``decompose_dataset``: every batch of the dataloader
    is decomposed and the weights, L0 norms and cosines are averaged over
    all images.

    Parameters
    ----------
    dataloader : iterable of (images, labels) or of images
        A ``torch.utils.data.DataLoader`` (or any iterable) yielding
        preprocessed image batches, alone or with their labels (the labels
        are not used).
    splicemodel : SPLICE, default=None
        The model (``None``: the reference's default, see
        :func:`decompose_image`).
    device : str, default="cpu"
        The device of the default model.

    Returns
    -------
    weights : torch.Tensor of shape (n_concepts,)
        The mean weights over the dataset.
    l0_norm : float
        The mean number of nonzero weights per image.
    cosine : float
        The mean cosine between each image's CLIP embedding and its
        reconstruction.

    Raises
    ------
    ValueError
        When the dataloader yields no image.
    """
    model = _model_or_default(splicemodel, device)
    total_weights, l0, cosine, total = None, 0.0, 0.0, 0
    for batch in dataloader:
        images = _images_of(batch)
        weights, batch_cosine = _weights_and_cosine(model, images)
        summed = weights.sum(dim=0)
        total_weights = summed if total_weights is None else total_weights + summed
        l0 += _l0(weights)
        cosine += batch_cosine
        total += _n_rows(weights)
    if total == 0:
        raise ValueError("the dataloader yielded no images; pass a dataloader over a "
                         "non-empty dataset.")
    return total_weights / total, l0 / total, cosine / total


def decompose_classes(dataloader, target_label, splicemodel=None, device="cpu"):
    """The mean concept weights of each class, with the mean L0 norm and cosine.

    As the reference's ``decompose_classes``: the dataloader yields
    ``(images, labels)``; with ``target_label`` only the images of that
    label are decomposed.

    Parameters
    ----------
    dataloader : iterable of (images, labels)
        A ``torch.utils.data.DataLoader`` (or any iterable) of preprocessed
        image batches and their integer labels.
    target_label : int or None
        Decompose only the images with this label (``None``: every class).
    splicemodel : SPLICE, default=None
        The model (``None``: the reference's default, see
        :func:`decompose_image`).
    device : str, default="cpu"
        The device of the default model.

    Returns
    -------
    class_weights : dict of int to torch.Tensor of shape (n_concepts,)
        Each label's mean weights (only ``target_label`` when given).
    l0_norm : float
        The mean number of nonzero weights per decomposed image.
    cosine : float
        The mean cosine between each decomposed image's CLIP embedding and
        its reconstruction.

    Raises
    ------
    ValueError
        When no image was decomposed (an empty dataloader, or no image of
        ``target_label``).
    """
    import torch

    model = _model_or_default(splicemodel, device)
    sums, counts = {}, {}
    l0, cosine, total = 0.0, 0.0, 0
    for images, labels in dataloader:
        labels = torch.as_tensor(labels).reshape(-1)
        if target_label is not None:
            keep = torch.nonzero(labels == target_label).reshape(-1)
            if keep.numel() == 0:
                continue
            images, labels = images[keep], labels[keep]
        weights, batch_cosine = _weights_and_cosine(model, images)
        for row, label in zip(weights, labels.tolist(), strict=True):
            sums[label] = row.clone() if label not in sums else sums[label] + row
            counts[label] = counts.get(label, 0) + 1
        l0 += _l0(weights)
        cosine += batch_cosine
        total += _n_rows(weights)
    if total == 0:
        what = "no images" if target_label is None else f"no image of label {target_label!r}"
        raise ValueError(f"the dataloader yielded {what}; check the dataset and the label.")
    return {label: sums[label] / counts[label] for label in sums}, l0 / total, cosine / total


def _known_names():
    """The reference code's model names, quoted and comma-separated."""
    return ", ".join(repr(a) for a in ENCODER_ALIASES if a.startswith(("clip:", "open_clip:")))


def _open_clip_name(name):
    """``(open_clip model, tag or None)`` of a reference name (``"clip:ViT-B/32"``...)."""
    if not isinstance(name, str):
        raise ValueError(f"name must be a model name such as 'open_clip:ViT-B-32'; got "  # noqa: TRY004
                         f"{type(name).__name__}.")
    library, sep, _ = name.partition(":")
    if sep and library in ("clip", "open_clip") and name not in ENCODER_ALIASES:
        raise ValueError(f"{name!r} is not one of the reference code's names "
                         f"({_known_names()}); or pass an open_clip 'MODEL:TAG' name.")
    model, _, tag = canonical_name(name).partition(":")
    if not model or "/" in model or library == "hf":
        raise ValueError(f"{name!r} is not an open_clip model name: pass a reference name "
                         f"({_known_names()}) or an open_clip 'MODEL:TAG' name.")
    return model, tag or None


def get_tokenizer(name):
    """The text tokenizer of a backbone, as the reference's ``get_tokenizer``.

    Parameters
    ----------
    name : str
        A reference name (``"clip:ViT-B/32"``, ``"open_clip:ViT-B-32"``...)
        or an open_clip ``"MODEL:TAG"``.

    Returns
    -------
    tokenizer : callable
        open_clip's tokenizer of the model: a string or a list of strings to
        a ``torch.LongTensor`` of token ids of shape (n_texts,
        context_length), the same ids as the reference's ``clip.tokenize``
        for OpenAI models.

    Examples
    --------
    >>> from sksplice.compat import get_tokenizer
    >>> get_tokenizer("clip:ViT-B/32")(["a photo of a cat"]).shape
    torch.Size([1, 77])
    """
    import open_clip

    model, _ = _open_clip_name(name)
    return open_clip.get_tokenizer(model)


def get_preprocess(name):
    """The image preprocessing transform of a backbone, as the reference's ``get_preprocess``.

    Built from open_clip's configuration of the model and its pretrained tag
    (image size, normalisation, interpolation); no weights are loaded.

    Parameters
    ----------
    name : str
        A reference name (``"clip:ViT-B/32"``, ``"open_clip:ViT-B-32"``...)
        or an open_clip ``"MODEL:TAG"``.

    Returns
    -------
    preprocess : callable
        A PIL image to a float tensor of shape (3, H, W), ready for
        ``unsqueeze(0)`` and :func:`decompose_image`.

    Examples
    --------
    >>> from PIL import Image
    >>> from sksplice.compat import get_preprocess
    >>> get_preprocess("clip:ViT-B/32")(Image.new("RGB", (320, 240))).shape
    torch.Size([3, 224, 224])
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    model, tag = _open_clip_name(name)
    config = open_clip.get_model_config(model)
    if config is None:
        raise ValueError(f"open_clip has no model {model!r}; see "
                         "sksplice.list_encoders(include_open_clip=True).")
    cfg = PreprocessCfg(size=config.get("vision_cfg", {}).get("image_size", 224))
    if config.get("vision_cfg", {}).get("preprocess_cfg"):
        cfg = PreprocessCfg(**merge_preprocess_dict(cfg, config["vision_cfg"]["preprocess_cfg"]))
    if tag is not None and not tag.endswith((".pt", ".bin", ".safetensors")):
        pretrained = open_clip.get_pretrained_cfg(model, tag) or {}
        cfg = PreprocessCfg(**merge_preprocess_dict(cfg, pretrained))
    return image_transform_v2(cfg, is_train=False)

