"""What every command-line entry point shares: its parser, its checks of counts, quiet library
output, and one way to report an error and exit."""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
import warnings
from typing import Callable

from cvae import limits, options
from cvae.errors import op_error_text

VERBOSE_ENV = "CVAE_VERBOSE"  # set to 1 (or pass --verbose): the libraries' log lines come back
# Libraries whose Python warnings a command hides (DeprecationWarning and the like, about their
# own internals: nothing a user of the command can act on).
_LIBRARY_MODULES = (r"(tensorflow|tensorflow_probability|tf_keras|keras|absl|google\.protobuf"
                    r"|grpc)(\.|$)")

def _user_message(error: Exception) -> str | None:
    """The one-line message for an error the user can act on; None for a bug."""
    tf = sys.modules.get("tensorflow")  # not imported yet: the error cannot be TensorFlow's
    if tf is not None and isinstance(error, tf.errors.OpError):
        # e.g. a label out of range, found by the exported model's own checks
        return op_error_text(error.message)
    if isinstance(error, (ValueError, OSError, RuntimeError)):
        return str(error)
    return None


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends an option's text with "(default: X)" when it has a default worth showing
    (not None, not False) and its text does not give one already (the config flags' do)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "(default" in text or default is None
                or default is False or default == argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of a `pipelines.*` command: described by the first paragraph of `doc` (its
    docstring's opening sentence, however many lines it takes), each default shown once, and
    --verbose (which `pipelines/__init__.py` reads, before TensorFlow loads)."""
    parser = argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()),
                                     formatter_class=HelpFormatter)
    parser.add_argument("--verbose", action="store_true",
                        help=f"show TensorFlow's, absl's and CUDA's own log lines and the "
                             f"libraries' warnings (as does {VERBOSE_ENV}=1)")
    return parser


def check_count(parser: argparse.ArgumentParser, flag: str, value: int | None, bound: int,
                lowest: int | None = 1) -> None:
    """A usage error (argparse's exit status 2) unless `value` is None or in lowest..bound (the
    upper bounds are `cvae.limits`'; lowest None: a library check that follows has its own)."""
    if value is not None and lowest is not None and value < lowest:
        parser.error(f"{flag} must be >= {lowest}, got {value}")
    if value is not None and value > bound:
        parser.error(f"{flag} must be <= {bound}, got {value}")


def check_grid_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                         max_num: int) -> None:
    """Usage errors (argparse's exit status 2) shared by the commands that write an image grid:
    --version, --num (1..max_num), --seed (`cvae.options`' bounds), --columns, and --out and
    --npy (at least one, each with its extension; a grid holds at most `limits.MAX_GRID_IMAGES`
    images)."""
    if args.version is not None and args.version < 1:
        parser.error(f"--version must be >= 1, got {args.version}")
    check_count(parser, "--num", args.num, max_num)
    if (problem := options.seed_problem(args.seed)) is not None:
        parser.error(problem)
    check_count(parser, "--columns", args.columns, limits.MAX_GRID_IMAGES)
    if args.out is None and args.npy is None:
        parser.error("give --out (a PNG grid), --npy (the images as an array) or both")
    for flag, path in (("--out", args.out), ("--npy", args.npy)):
        if path is not None and (problem := options.output_problem(flag, path)) is not None:
            parser.error(problem)
    if args.out is not None and args.num > limits.MAX_GRID_IMAGES:
        parser.error(f"--out: a PNG grid holds at most {limits.MAX_GRID_IMAGES} images, got "
                     f"--num {args.num}; write them with --npy alone")


# Flags an action would ignore, refused rather than silently dropped, the same way by every
# command that has the action: what the action does, and the flags it takes no value of.
IGNORED_FLAGS = {
    "--restyle": ("redraws one image and draws nothing at random", ("num", "seed")),
    "--denoise": ("cleans one image and draws nothing at random", ("num", "seed")),
    "--classify": ("prints one line per image and writes no file",
                   ("label", "num", "seed", "columns", "out", "npy")),
}


def refuse_ignored_flags(parser: argparse.ArgumentParser, args: argparse.Namespace,
                         action: str) -> None:
    """A usage error naming the flags `action` (a key of IGNORED_FLAGS) would ignore that were
    given (not None), if any."""
    what, names = IGNORED_FLAGS[action]
    given = [f"--{name}" for name in names if getattr(args, name, None) is not None]
    if given:
        parser.error(f"{action} {what}; it takes no {', '.join(given)}")


def check_mask(parser: argparse.ArgumentParser, spec: str) -> None:
    """A usage error unless --mask is a name in `options.MASK_NAMES` or a file there is."""
    if (problem := options.mask_problem(spec)) is not None:
        parser.error(problem)


def check_inputs(*paths: str | None) -> None:
    """OSError "PATH: cannot read (REASON)" for the first input file given (not None) that
    cannot be opened: before TensorFlow loads, so a typo costs no import."""
    for path in paths:
        if path is not None:
            options.check_input_file(path)


def written(*paths: str | None) -> str:
    """The files a command wrote, for its success line: "a.png", "a.png and a.npy"."""
    return " and ".join(path for path in paths if path)


def verbose_requested(argv: list[str]) -> bool:
    """Whether the command line has --verbose or the environment sets CVAE_VERBOSE (not 0)."""
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV, "0") not in ("", "0")


def quiet_libraries() -> None:
    """Keeps the libraries' own output off stderr, so that a command prints only its own lines.
    Call it before TensorFlow is imported (`pipelines/__init__.py` does, for every command):

    - TF_CPP_MIN_LOG_LEVEL=3 (unless set already) for what TensorFlow's C++ code logs once it
      has read that variable (e.g. "failed call to cuInit" on a machine without a GPU), and
      GRPC_VERBOSITY=ERROR for the gRPC client;
    - the lines TensorFlow's shared libraries log while they load ("oneDNN custom operations are
      on", "Could not find cuda drivers"): TF 2.21 writes them through absl before
      absl::InitializeLog, which no setting reaches, so file descriptor 2 points at a temporary
      file while `import tensorflow` runs, and what it caught is shown if the import fails;
    - the `tensorflow` and `absl` Python loggers at ERROR, and the libraries' Python warnings.

    Python's `-X importtime` writes to stderr too: a run that asks for it keeps the import's
    output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from absl import logging as absl_logging  # absl-py, pure Python: TensorFlow's dependency

    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=_LIBRARY_MODULES)
    if "tensorflow" not in sys.modules and "importtime" not in sys._xoptions:
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


class _QuietImport(importlib.abc.MetaPathFinder):
    """Has the usual finders find the top-level module `name`, once, and loads it with file
    descriptor 2 pointed at a temporary file (`quiet_libraries`)."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """`loader`, running the module's code with stderr caught (see `_stderr_caught`)."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__spec__.loader = module.__loader__ = self.loader  # the module's own, once loaded
        with _stderr_caught():
            self.loader.exec_module(module)


@contextlib.contextmanager
def _stderr_caught():
    """Points file descriptor 2 (C++ logging and Python's sys.stderr alike) at a temporary file
    for the block; writes what it caught to the real stderr if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                caught.seek(0)
                os.write(2, caught.read())


def run(main: Callable[[], None]) -> int:
    """Runs `main`; a user-facing error is printed as one `error: ...` line on stderr and gives
    exit status 2 (anything unexpected keeps its traceback)."""
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = _user_message(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0
