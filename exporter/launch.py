"""The console script's first instructions: SIGHUP is held back until the exporter can reload.

SIGHUP's default action ends the process. The kernel keeps a blocked signal pending, so one
sent while the exporter starts (or during ``--once`` and ``--check-config``, which never
reload) waits instead of killing it; serving unblocks it once its handler is in place, and the
reload it asked for runs then.
"""

import signal

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})

from exporter.cli import main  # noqa: E402 - after the mask, on purpose

__all__ = ["main"]
