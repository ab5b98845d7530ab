"""Worker processes that never outlive their parent.

Every process pool of the package starts its workers with ``init_worker``: on Linux each worker
asks the kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), so a killed
``describe``, ``data`` or ``evaluate`` leaves no orphaned workers behind; Ctrl-C is left to the
parent, which saves what is finished.
"""
from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def init_worker(ignore_sigint: bool = True) -> None:
    """Pool initializer: die with the parent; optionally leave Ctrl-C to the parent. SIGTERM gets
    its default action back: a forked worker inherits whatever handler the parent had installed
    (``describe`` maps SIGTERM to KeyboardInterrupt), and the parent-death signal must kill."""
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            return
        if os.getppid() == 1:  # the parent died before the request took effect
            os._exit(1)
