"""What every command-line entry point shares: one way to report an error and exit."""

from __future__ import annotations

import sys
from typing import Callable


def _user_message(error: Exception) -> str | None:
    """The one-line message for an error the user can act on; None for a bug."""
    tf = sys.modules.get("tensorflow")  # not imported yet: the error cannot be TensorFlow's
    if tf is not None and isinstance(error, tf.errors.OpError):
        # e.g. a label out of range, found by the exported model's own checks
        return error.message.strip().splitlines()[0]
    if isinstance(error, (ValueError, OSError, RuntimeError)):
        return str(error)
    return None


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
