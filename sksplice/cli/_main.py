"""``main``: parse, run one command, turn errors into one line and an exit status."""

from __future__ import annotations

import os
import re
import sys
import traceback
import warnings

from ._commands import COMMANDS, info, one_line
from ._parser import PROG, build_parser
from ._resolve import CLIError, set_offline

__all__ = ["main"]


def _cli_wording(message):
    """Library hints phrased for the command line (e.g. ``encoder=(M, path)`` -> flags)."""
    return re.sub(r"encoder=\('([^']*)', '([^']*)'\)", r"--model \1 --checkpoint \2", message)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    info(f"{PROG}: warning: {one_line(message)}")


def main(argv=None):
    """Run the ``sksplice`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments (``sys.argv[1:]`` when None).

    Returns
    -------
    status : int
        0 on success, 1 on errors, 130 when interrupted (argparse exits with
        2 on bad usage).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func == "decompose" and not (args.inputs or args.text or args.texts):
        args.usage_error("nothing to decompose: pass image or embeddings files, --text TEXT "
                         "or --texts FILE")  # exits 2, as argparse does
    verbose = getattr(args, "verbose", False)
    set_offline(args)
    shown = warnings.showwarning
    if not verbose:
        warnings.showwarning = _show_warning
    try:
        return int(COMMANDS[args.func](args) or 0)
    except KeyboardInterrupt:
        info(f"{PROG}: interrupted")
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): not an error worth a message
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
        except OSError:
            pass
        return 0
    except Exception as exc:  # noqa: BLE001 - one clear line; the trace only with --verbose
        if verbose:
            traceback.print_exc()
        message = _cli_wording(one_line(exc)) or type(exc).__name__
        if not isinstance(exc, (CLIError, ValueError, OSError, ImportError, KeyError)):
            message = f"{type(exc).__name__}: {message}"
        info(f"{PROG}: error: {message}")
        return 1
    finally:
        warnings.showwarning = shown
