"""
The `ratethrottle` command, as installed by pip (and `python -m ratethrottle`): the very same
command as the Rust binary, run from the extension module.

    $ ratethrottle test --rule api --requests 12
    $ ratethrottle --whitelist-add 10.0.0.1      # the original's spellings work too

Exit codes: 0 ok, 1 denied or failed check, 2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import List, Optional, Sequence

from . import _native

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line `argv` (default: this process's arguments); its exit code."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    in_main_thread = threading.current_thread() is threading.main_thread()
    # Ctrl-C goes to the command (which ends with exit 130), not to a KeyboardInterrupt
    # Python could only raise once the command returned.
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL) if in_main_thread else None
    try:
        return _native.cli_main(["ratethrottle", *args])
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
