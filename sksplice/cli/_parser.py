"""The ``argparse`` parser: one function per command, every default read from the library."""

from __future__ import annotations

import argparse
import inspect
import string

from .. import _defaults

__all__ = ["PROG", "build_parser"]

PROG = "sksplice"

#: Upper bounds on numbers whose size sets the work (a small input must not cost hours).
MAX_ITER = 10**6
MAX_BATCH = 4096
MAX_SHARD = 10**6
MAX_TEMPLATE = 1000


def build_parser():
    """The ``argparse`` parser of the ``sksplice`` command.

    Returns
    -------
    parser : argparse.ArgumentParser
        Parses a command line into the options of one command (``func``
        names the command to run).

    Examples
    --------
    >>> args = build_parser().parse_args(["decompose", "cat.jpg", "--l1", "0.3", "--json"])
    >>> args.command, args.inputs, args.l1, args.format
    ('decompose', ['cat.jpg'], 0.3, 'json')
    """
    from .._version import __version__

    common = _common_options()
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[common],
        description="SpLiCE: sparse, human-readable concept decompositions of CLIP image "
                    "embeddings.",
        epilog="Run `sksplice COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    model, decomp = _model_options(), _decomposition_options()
    add_decompose(sub, [common, model, decomp])
    add_decompose_dir(sub, [common, model, decomp])
    add_report(sub, [common])
    add_estimate_mean(sub, [common, model])
    add_build_vocabulary(sub, [common])
    add_list_models(sub, [common])
    add_list_vocabularies(sub, [common])
    return parser


# ------------------------------------------------------------ value types
def _bounded_int(low, high=None):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {high}")
        return value

    return parse


_positive_int = _bounded_int(1)


def _vocabulary_size(text):
    """A positive size, or -1 for the whole vocabulary (as ``vocabulary_size=-1``)."""
    if text.strip() == "-1":
        return -1
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a vocabulary size: pass a positive number of concepts, or "
            "-1 for the whole vocabulary") from None
_nonnegative_int = _bounded_int(0)


def _nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _prompt_template(text):
    """One bare ``{}`` field: no format spec (``{:>999999999}`` would allocate gigabytes)."""
    if len(text) > MAX_TEMPLATE:
        raise argparse.ArgumentTypeError(f"the template is {len(text)} characters long; at "
                                         f"most {MAX_TEMPLATE} are allowed")
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text)
                  if f is not None]
    except ValueError:
        fields = None
    if fields != [("", "", None)]:
        raise argparse.ArgumentTypeError(
            f"{text!r} must contain exactly one '{{}}' (no name, conversion or format spec) "
            "where the concept goes, e.g. '{}' or 'a photo of {}'; write literal braces as "
            "'{{' and '}}'")
    return text


class _Explicit(argparse.Action):
    """Store the value and record that the option was given (``args.explicit``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        explicit = set(getattr(namespace, "explicit", ()))
        explicit.add(self.dest)
        namespace.explicit = explicit


def _library_default(func, name):
    """The default of parameter ``name`` of a library function (one source of truth)."""
    return inspect.signature(func).parameters[name].default


# ------------------------------------------------------------ option groups
def _common_options():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    return common


def _model_options():
    model = argparse.ArgumentParser(add_help=False)
    g = model.add_argument_group("model")
    g.add_argument("--model", default=None, metavar="NAME",
                   help=f"open_clip model name (default: {_defaults.ENCODER.split(':')[0]}; "
                        "see `sksplice list-models`)")
    g.add_argument("--pretrained", default=None, metavar="TAG",
                   help="open_clip pretrained tag (default: the model's SpLiCE tag, "
                        f"{_defaults.ENCODER.split(':')[1]} for "
                        f"{_defaults.ENCODER.split(':')[0]})")
    g.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="load the weights from this local file instead of downloading them "
                        "(state dict or .safetensors)")
    g.add_argument("--model-config", default=None, metavar="JSON",
                   help="open_clip model config for an architecture open_clip does not ship "
                        "(registered under --model, default: the file's stem; a plain name, "
                        "never a path)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--batch-size", type=_bounded_int(1, MAX_BATCH),
                   default=_defaults.IMAGE_BATCH_SIZE, metavar="N",
                   help=f"images encoded at once (default: {_defaults.IMAGE_BATCH_SIZE})")
    g.add_argument("--offline", action="store_true",
                   help="never use the network (also SKSPLICE_OFFLINE=1)")
    g.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="where vocabularies, means and dictionaries are cached "
                        "(default: $SKSPLICE_CACHE or the user cache folder)")
    return model


def _solver_choices():
    """``auto`` and the registered solvers, without importing them (start-up time)."""
    return ["auto", *_defaults.SOLVER_NAMES]


def _decomposition_options():
    decomp = argparse.ArgumentParser(add_help=False)
    g = decomp.add_argument_group("decomposition")
    sparsity = g.add_mutually_exclusive_group()
    sparsity.add_argument("--l1", type=_nonnegative_float, default=None,
                          help="sparsity penalty, reference-implementation scale "
                               f"(default: {_defaults.L1})")
    sparsity.add_argument("--n-nonzero", type=_bounded_int(1, MAX_SHARD), default=None,
                          metavar="K", help="find per input the penalty giving exactly K "
                                            "concepts (instead of --l1)")
    g.add_argument("--dictionary", default=None, metavar="FILE.npz",
                   help="a precomputed concept dictionary (ConceptDictionary.save): no "
                        "vocabulary is encoded, and embeddings files need no model at all")
    g.add_argument("--vocabulary", default=_defaults.VOCABULARY, metavar="NAME|FILE",
                   action=_Explicit,
                   help="built-in vocabulary name or a text file, one concept a line, least "
                        f"to most frequent (default: {_defaults.VOCABULARY})")
    g.add_argument("--vocabulary-size", type=_vocabulary_size, action=_Explicit,
                   default=_defaults.VOCABULARY_SIZE, metavar="N",
                   help="keep the N most frequent concepts, -1 for the whole vocabulary "
                        f"(default: {_defaults.VOCABULARY_SIZE}, as in Python)")
    g.add_argument("--prompt-template", type=_prompt_template, action=_Explicit,
                   default=_defaults.PROMPT_TEMPLATE, metavar="TEMPLATE",
                   help="template each concept is encoded with (default: "
                        f"{_defaults.PROMPT_TEMPLATE!r})")
    g.add_argument("--mean", default="auto", metavar="auto|none|MODEL:TAG|FILE",
                   help="image mean subtracted before decomposing: 'auto' (the model's "
                        "reference mean), 'none', a registered MODEL:TAG, or a .npy/.pt file "
                        "from `sksplice estimate-mean` (default: auto); texts are centred on "
                        "the vocabulary's text mean")
    g.add_argument("--solver", default="auto", choices=_solver_choices(),
                   help="decomposition solver: %(choices)s (default: %(default)s)")
    g.add_argument("--tol", type=_nonnegative_float, default=_defaults.TOL,
                   help=f"target relative duality gap (default: {_defaults.TOL})")
    g.add_argument("--max-iter", type=_bounded_int(1, MAX_ITER), default=None, metavar="N",
                   help=f"iteration budget per input, at most {MAX_ITER} (default: the "
                        "solver's)")
    return decomp


# ------------------------------------------------------------------ commands
def add_decompose(sub, parents):
    """``sksplice decompose``: images, embeddings files and texts -> top concepts."""
    p = sub.add_parser(
        "decompose", parents=parents, help="top concepts of images, embeddings or texts",
        description="Decompose images, embeddings (.npy, .pt, .safetensors files: one row "
                    "per input) or texts into their top concepts; prints the weights, the L0 "
                    "norm and the reconstruction cosine.")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image files, or embeddings files (.npy/.pt/.pth/.safetensors, "
                        "shape (n, dim) or (dim,)); sklearn:china.jpg and sklearn:flower.jpg "
                        "name the photos scikit-learn ships")
    p.add_argument("--text", action="append", default=[], metavar="TEXT",
                   help='a text to decompose (repeatable), e.g. --text "a red car"')
    p.add_argument("--texts", default=None, metavar="FILE",
                   help="a UTF-8 file of texts, one a line ('-' for stdin)")
    p.add_argument("--top-k", type=_nonnegative_int, default=_defaults.TOP_K, metavar="K",
                   help=f"concepts shown per input, 0 for all nonzero (default: "
                        f"{_defaults.TOP_K})")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     help="print JSON")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv",
                     help="print CSV (image, rank, concept, weight, l0_norm, cosine; "
                          "'image' names the input)")
    p.add_argument("--strict", action="store_true",
                   help="fail on an unreadable image instead of skipping it")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bar shown while a vocabulary is encoded")
    p.set_defaults(format="table", func="decompose", usage_error=p.error)
    return p


def add_decompose_dir(sub, parents):
    """``sksplice decompose-dir``: a folder of images -> sparse code shards."""
    from ..shards import decompose_to_shards

    p = sub.add_parser(
        "decompose-dir", parents=parents, help="a folder of images -> sparse code shards",
        description="Decompose every image under DIR (sub-folders name the classes) into "
                    "sparse code shards in OUT, with the concept names, a manifest, a "
                    "per-class summary and plots. An interrupted run resumes when rerun "
                    "with the same arguments; one run at a time may write OUT.")
    p.add_argument("directory", metavar="DIR", help="folder of images")
    p.add_argument("--out", "-o", required=True, metavar="OUT",
                   help="output folder (never read as input, even inside DIR)")
    shard_size = _library_default(decompose_to_shards, "shard_size")
    p.add_argument("--shard-size", type=_bounded_int(1, MAX_SHARD), default=shard_size,
                   metavar="N", help=f"images per shard (default: {shard_size})")
    p.add_argument("--top-k", type=_bounded_int(1, MAX_SHARD), default=_defaults.TOP_K,
                   metavar="K", help="concepts per class in the summary and plots (default: "
                                     f"{_defaults.TOP_K})")
    p.add_argument("--strict", action="store_true",
                   help="fail on an unreadable image instead of skipping it")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a decomposition in OUT made with other settings (only the "
                        "files sksplice wrote there are deleted)")
    p.add_argument("--no-plots", action="store_true", help="do not write per-class plots")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func="decompose-dir")
    return p


def add_report(sub, parents):
    """``sksplice report``: an HTML report of a decomposition folder.

    Its defaults are read from ``_defaults`` (the ones ``build_report`` uses), so
    building the parser does not import the report package and scipy with it.
    """
    p = sub.add_parser(
        "report", parents=parents, help="a self-contained HTML report of a decomposition",
        description="Write one static HTML file (default OUT/report.html) from a finished "
                    "decompose-dir folder: the run, the top concepts with the images where "
                    "they weigh most, each class, the concepts that separate the classes, "
                    "images to check and every image. It embeds its thumbnails and fetches "
                    "nothing, so it opens anywhere, offline.")
    p.add_argument("out", metavar="OUT", help="a decomposition folder (decompose-dir --out)")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="the HTML file to write (default: OUT/report.html)")
    for flag, name, what in (
            ("--top-concepts", "top_concepts", "concepts in the top list (half as many per "
                                               "class)"),
            ("--images-per-concept", "images_per_concept", "images shown per concept and "
                                                           "per class"),
            ("--concepts-per-image", "concepts_per_image", "concepts listed per image"),
            ("--thumbnail-size", "thumbnail_size", "longest thumbnail edge in pixels")):
        default = getattr(_defaults, f"REPORT_{name.upper()}")
        p.add_argument(flag, type=_bounded_int(1, 4096), default=default, metavar="N",
                       help=f"{what} (default: {default})")
    default = _defaults.REPORT_MAX_THUMBNAILS
    p.add_argument("--max-thumbnails", type=_bounded_int(0, MAX_SHARD), default=default,
                   metavar="N", help="thumbnails embedded at most, which bounds the file's "
                                     f"size (default: {default})")
    p.add_argument("--title", default=None, help="page title (default: from OUT's name)")
    p.set_defaults(func="report")
    return p


def add_estimate_mean(sub, parents):
    """``sksplice estimate-mean``: the mean image embedding of a folder."""
    p = sub.add_parser(
        "estimate-mean", parents=parents, help="mean image embedding of a folder (for --mean)",
        description="Estimate an image mean (the mean of normalised image embeddings) for a "
                    "backbone without a reference mean. Use a broad, diverse image set, not "
                    "the images to decompose.")
    p.add_argument("directory", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", "-o", required=True, metavar="FILE",
                   help="where to write the mean: .npy, or .pt (a torch tensor, as the "
                        "reference means)")
    p.add_argument("--strict", action="store_true",
                   help="fail on an unreadable image instead of skipping it")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func="estimate-mean")
    return p


def add_build_vocabulary(sub, parents):
    """``sksplice build-vocabulary``: a concept vocabulary from captions."""
    from ..vocabularies import build_vocabulary

    n_words = _library_default(build_vocabulary, "n_words")
    n_bigrams = _library_default(build_vocabulary, "n_bigrams")
    min_count = _library_default(build_vocabulary, "min_count")
    p = sub.add_parser(
        "build-vocabulary", parents=parents, help="a concept vocabulary from captions",
        description="Build a SpLiCE vocabulary (most frequent words and two-word phrases, "
                    "stopwords dropped) from a caption file, one caption a line; written "
                    "least to most frequent, one concept a line, for --vocabulary.")
    p.add_argument("captions", metavar="CAPTIONS.txt", help="caption file ('-' for stdin)")
    p.add_argument("--out", "-o", default=None, metavar="FILE",
                   help="output file (default: stdout)")
    p.add_argument("--n-words", type=_nonnegative_int, default=n_words, metavar="N",
                   help=f"single words to keep (default: {n_words})")
    p.add_argument("--n-bigrams", type=_nonnegative_int, default=n_bigrams, metavar="N",
                   help=f"two-word phrases to keep (default: {n_bigrams})")
    p.add_argument("--min-count", type=_positive_int, default=min_count, metavar="N",
                   help=f"drop terms seen fewer times (default: {min_count})")
    p.set_defaults(func="build-vocabulary")
    return p


def add_list_models(sub, parents):
    """``sksplice list-models``: known backbones."""
    p = sub.add_parser("list-models", parents=parents, help="known backbones",
                       description="The paper's backbones (with reference image means); "
                                   "--all adds every open_clip model and tag.")
    p.add_argument("--all", action="store_true", help="also list every open_clip MODEL:TAG")
    p.set_defaults(func="list-models")
    return p


def add_list_vocabularies(sub, parents):
    """``sksplice list-vocabularies``: built-in vocabularies."""
    p = sub.add_parser("list-vocabularies", parents=parents, help="built-in vocabularies",
                       description="Built-in vocabularies, their default sizes and whether "
                                   "they are cached.")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="cache folder to inspect (default: $SKSPLICE_CACHE or the user cache)")
    p.set_defaults(func="list-vocabularies")
    return p
