"""What every command-line script shares: bad input ends in one line naming the problem and the fix, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

USAGE_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)


def run_cli(main: Callable[[], Any]) -> int:
    """Run `main`; turn a usage error into `error: <message>` on stderr and exit code 2."""
    try:
        main()
    except USAGE_ERRORS as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0
