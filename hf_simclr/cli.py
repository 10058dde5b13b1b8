"""What every script in ``scripts/`` shares: arguments from flags or a JSON/YAML file, and one way to fail.

A script is ``sys.exit(run_cli(lambda: work(parse_args())))``: arguments are dataclasses read by transformers'
``HfArgumentParser`` (``python scripts/pretrain.py run.json`` reads them from a file instead, as transformers' example
scripts do); an error a person can act on ends in one line on stderr and the exit code of :mod:`hf_simclr.errors`.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from transformers import HfArgumentParser

from .errors import RunFailure, UsageError

# Bad input: hf_simclr's UsageError, and the same kinds of error from the libraries and from the model files saved
# with every checkpoint (which cannot import hf_simclr): an invalid config value, a missing file or folder.
USAGE_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)
CONFIG_FILE_SUFFIXES = (".json", ".yaml", ".yml")
Arguments = TypeVar("Arguments")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written; defaults shown, except ``None`` (the help text then says what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` whose mistakes are :class:`UsageError` s: one line and exit code 2 in :func:`run_cli`.

    Abbreviated flags are refused, so that a typo such as ``--privat`` is an error and not another flag.
    """

    def __init__(self, dataclass_types: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(dataclass_types, **kwargs)

    def error(self, message: str) -> None:  # argparse would print its usage block and exit
        raise UsageError(f"{message} (see --help)")

    def parse(self, argv: Sequence[str] | None = None) -> tuple[Any, ...]:
        """The dataclasses filled from ``argv`` (default: ``sys.argv[1:]``), or from the one JSON/YAML file it names."""
        argv = list(sys.argv[1:] if argv is None else argv)
        if len(argv) == 1 and argv[0].endswith(CONFIG_FILE_SUFFIXES):
            read = self.parse_json_file if argv[0].endswith(".json") else self.parse_yaml_file
            try:
                return read(argv[0])
            except TypeError as error:  # a required argument missing from the file
                raise UsageError(f"{argv[0]}: {error}") from error
        *outputs, unknown = self.parse_args_into_dataclasses(
            argv, return_remaining_strings=True, look_for_args_file=False
        )
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return tuple(outputs)


def parse_arguments(
    arguments_class: type[Arguments], argv: Sequence[str] | None = None, description: str | None = None
) -> Arguments:
    """One dataclass of arguments from ``argv`` (default: the command line) or the JSON/YAML file it names."""
    (args,) = ArgumentParser(arguments_class, description=description).parse(argv)
    return args


def run_cli(main: Callable[[], Any]) -> int:
    """Run ``main`` and return the process's exit code: 0 when it returns, 2 on bad input, 1 when a run fails.

    Errors are told apart by type (:mod:`hf_simclr.errors`); their message is printed as one ``error:`` line on
    stderr. A full disk is a run failure wherever it strikes. Any other exception is a bug and keeps its traceback.
    """
    try:
        main()
    except RunFailure as error:
        _print_error(error)
        return error.exit_code
    except USAGE_ERRORS as error:
        _print_error(error)
        return UsageError.exit_code
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        _print_error(
            f"no space left on device while writing {error.filename}: free some space or choose another folder"
        )
        return RunFailure.exit_code
    return 0


def _print_error(error: BaseException | str) -> None:
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)


__all__ = ["ArgumentParser", "HelpFormatter", "USAGE_ERRORS", "parse_arguments", "run_cli"]
