"""What every command-line entry point shares: one way to report an error and exit."""

from __future__ import annotations

import sys
from typing import Callable


def run(main: Callable[[], None]) -> int:
    """Runs `main`; a user-facing error is printed as one `error: ...` line on stderr and gives
    exit status 2 (1 for anything unexpected, with its traceback)."""
    import tensorflow as tf

    try:
        main()
    except tf.errors.OpError as e:  # e.g. a label out of range, found by the model's own checks
        print(f"error: {e.message.strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
