"""What every script in ``scripts/`` shares: arguments from flags or a JSON/YAML file, and one way to fail.

A script is ``sys.exit(run_cli(lambda: work(parse_args())))``: arguments are dataclasses read by transformers'
``HfArgumentParser`` (``python scripts/pretrain.py run.json`` reads them from a file instead, as transformers' example
scripts do); an error a person can act on ends in one line on stderr and the exit code of :mod:`hf_simclr.errors`,
and Ctrl-C in one line that says how to go on (exit code 130).

This module and the argument dataclasses import neither torch nor transformers: a script's ``--help`` and a mistyped
flag answer at once, and the work's own modules load after the arguments are read.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import RunFailure, RunInterrupted, UsageError

# Bad input: hf_simclr's UsageError, and the same kinds of error from the libraries and from the model files saved
# with every checkpoint (which cannot import hf_simclr): an invalid config value, a missing file or folder.
USAGE_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)
CONFIG_FILE_SUFFIXES = (".json", ".yaml", ".yml")
Arguments = TypeVar("Arguments")
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def _hf_argument_parser() -> type:
    """transformers' ``HfArgumentParser``, from its own file while transformers is not imported yet.

    That file needs only the standard library and PyYAML, whereas ``import transformers`` sets up the whole library
    (about twenty times the CPU time of PyYAML); the same class without that cost keeps ``--help`` instant. A
    transformers whose argparser file needs more falls back to the regular import.
    """
    name = "hf_simclr._hf_argparser"
    if name in sys.modules:
        return sys.modules[name].HfArgumentParser
    spec = importlib.util.find_spec("transformers") if "transformers" not in sys.modules else None
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "hf_argparser.py"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is not None and module_spec.loader is not None:
            module = importlib.util.module_from_spec(module_spec)
            try:
                module_spec.loader.exec_module(module)
            except (ImportError, OSError):
                pass
            else:
                sys.modules[name] = module
                return module.HfArgumentParser
    from transformers import HfArgumentParser

    return HfArgumentParser


HfArgumentParser = _hf_argument_parser()


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

    @staticmethod
    def _parse_dataclass_field(parser: Any, field: Any) -> None:
        HfArgumentParser._parse_dataclass_field(parser, field)
        if field.default is None and field.type == bool | None:
            # `--flag` alone means true, as for plain booleans; `--flag false` turns it off; unset stays None, so
            # that a preset can decide
            action = next(a for a in parser._actions if a.dest == field.name)
            action.nargs, action.const = "?", True

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
    """Run ``main`` and return the process's exit code: 0 when it returns, 2 on bad input, 1 when a run fails, 130
    when Ctrl-C stopped it, 128 + the signal's number when a scheduler's signal did.

    Errors are told apart by type (:mod:`hf_simclr.errors`); their message is printed as one ``error:`` line on
    stderr, Ctrl-C as one ``interrupted`` line and a preemption as one ``preempted`` line (a
    :class:`RunInterrupted` says how to resume; one without a message, on the other processes of a run, prints
    nothing). A full disk is a run failure wherever it strikes. Any other exception is a bug and keeps its traceback.
    """
    try:
        main()
    except RunInterrupted as interrupted:
        if str(interrupted):
            print(f"{interrupted.label}: {' '.join(str(interrupted).split())}", file=sys.stderr)
        return interrupted.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
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


__all__ = ["INTERRUPTED_EXIT_CODE", "ArgumentParser", "HelpFormatter", "USAGE_ERRORS", "parse_arguments", "run_cli"]
