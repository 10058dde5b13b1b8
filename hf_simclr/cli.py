"""What every command-line script shares: bad input ends in one line naming the problem and the fix, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

USAGE_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)
# Failures that are not the user's input but whose message already names the cause and the way forward.
REPORTED_FAILURES = ("HubPushError", "NonFiniteLossError")


def run_cli(main: Callable[[], Any]) -> int:
    """Run `main`; a usage error prints `error: <message>` on stderr and returns 2, a failure whose message says
    what to do (a failed upload, a diverged run) prints it the same way and returns 1."""
    try:
        main()
    except USAGE_ERRORS as error:
        _print_error(error)
        return 2
    except Exception as error:
        if type(error).__name__ not in REPORTED_FAILURES:
            raise
        _print_error(error)
        return 1
    return 0


def _print_error(error: BaseException) -> None:
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
