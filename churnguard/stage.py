"""What every `python -m pipeline.<stage>` entry shares."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from churnguard.errors import InputError


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main`: bad input or a missing file is one line on stderr and exit 2, as in the CLI."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        main()
    except InputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    except FileNotFoundError as exc:
        sys.stderr.write(f"error: file not found: {exc.filename or exc}\n")
        sys.exit(2)
