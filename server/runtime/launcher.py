"""Run a command so that it, and every process it starts, dies with the gateway.

    python launcher.py CMD [ARGS…]      (started in its own session by the local runtime)

Cog's server exits when the gateway dies (it gets PR_SET_PDEATHSIG), but its worker keeps
running until the current predict() returns — a 30 s prediction leaves a 30 s orphan. This
launcher asks the kernel for SIGTERM when the gateway dies and answers it by killing its whole
process group (itself, the Cog server and the worker) at once. Normal stops do not involve it:
when the Cog server exits, the launcher exits with the same status. Standard library only.
"""

# It runs at every instance start, before Cog's own boot, so it imports only what it needs:
# ``signal`` would import ``enum`` and ``subprocess`` much more (together 10-20 ms here).
import _signal  # type: ignore[import-not-found]  # signal's C half, which has no stub
import os
import sys

PR_SET_PDEATHSIG = 1


def _kill_group(signum: int, frame: object) -> None:
    os.killpg(0, _signal.SIGKILL)


def main(argv: list[str]) -> int:
    parent = int(os.environ.get("COGWAY_GATEWAY_PID", "0"))
    _signal.signal(_signal.SIGTERM, _kill_group)
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, _signal.SIGTERM)
    if parent and os.getppid() != parent:  # the gateway died before we asked
        _kill_group(_signal.SIGTERM, None)
    child = os.posix_spawnp(argv[1], argv[1:], os.environ)
    _, status = os.waitpid(child, 0)  # retried after a signal (PEP 475)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
