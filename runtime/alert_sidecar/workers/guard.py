"""The parent of a worker the sidecar started: it ends the worker if the sidecar ends first.

    python -m alert_sidecar.workers.guard SIDECAR_PID COMMAND...

A sidecar stops its workers when it stops (worker_process.py), but a sidecar
killed outright (SIGKILL, the OOM killer, a crashed node agent) has no time
to: its workers would keep their ports and their memory, serving no one. The
guard runs COMMAND as its child in the worker's process group, watches the
sidecar's pid, and when the sidecar is gone stops the group as the sidecar
would have (SIGTERM, then SIGKILL). Otherwise it only waits, ignoring the
terminal signals the sidecar sends the group, and exits with the worker's
exit code (128 + N for a worker ended by signal N, as a shell reports it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

# How often the sidecar's pid is checked: a worker outlives a killed sidecar by about this long.
WATCH_INTERVAL_S = 0.5
# How long the worker may take to stop once its sidecar is gone, as the sidecar itself allows.
STOP_GRACE_S = 10.0


def _alive(sidecar: int) -> bool:
    # The sidecar is the guard's parent: once it has ended, the guard has another.
    return os.getppid() == sidecar


def main(argv: list[str]) -> int:
    sidecar, command = int(argv[0]), argv[1:]
    # The sidecar stops its workers by signalling their process group; the
    # worker decides when it has drained, and the guard waits for it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    guard = os.getpid()
    worker = subprocess.Popen(command, preexec_fn=lambda: _prepare_worker(guard))  # noqa: PLW1509 - one thread here
    while True:
        try:
            code = worker.wait(WATCH_INTERVAL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        if not _alive(sidecar):
            print(f"alert-sidecar worker guard: the sidecar (pid {sidecar}) is gone; stopping its worker "
                  f"(pid {worker.pid})", file=sys.stderr, flush=True)
            os.killpg(0, signal.SIGTERM)  # the worker and whatever it started; the guard ignores it
            try:
                code = worker.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(0, signal.SIGKILL)
                return 137
            break
    return code if code >= 0 else 128 - code


# prctl(2): the signal the kernel sends a process when its parent ends.
_PR_SET_PDEATHSIG = 1


def _prepare_worker(guard: int) -> None:
    # The worker gets SIGTERM and SIGINT as if the sidecar had started it itself.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # And ends if the guard itself is killed, rather than keep a port that the
    # worker the sidecar starts next needs. Linux only, kept across exec.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):
        return
    if os.getppid() != guard:  # the guard ended before the request was made
        os._exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
