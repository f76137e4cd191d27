"""Run a command so that it, and every process it starts, dies with the gateway.

    python launcher.py CMD [ARGS…]      (started in its own session by the local runtime)

Cog's server exits when the gateway dies (it gets PR_SET_PDEATHSIG), but its worker keeps
running until the current predict() returns — a 30 s prediction leaves a 30 s orphan. This
launcher asks the kernel for SIGTERM when the gateway dies and answers it by killing its whole
process group (itself, the Cog server and the worker) at once. Normal stops do not involve it:
when the Cog server exits, the launcher exits with the same status. Standard library only.

With ``COGWAY_CPU_POLICY=batch`` it first switches itself to the ``SCHED_BATCH`` policy, which
the Cog server, its worker and all their threads inherit (README, "Why instances run as
SCHED_BATCH").
"""

import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def _kill_group(signum: int, frame: FrameType | None) -> None:
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    parent = int(os.environ.get("COGWAY_GATEWAY_PID", "0"))
    signal.signal(signal.SIGTERM, _kill_group)
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent and os.getppid() != parent:  # the gateway died before we asked
        _kill_group(signal.SIGTERM, None)
    if os.environ.get("COGWAY_CPU_POLICY") == "batch" and hasattr(os, "SCHED_BATCH"):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    child = subprocess.Popen(argv[1:])
    while True:
        try:
            return child.wait()
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv))
