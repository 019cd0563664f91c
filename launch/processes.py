"""Running one run as a group of processes (1 for `local`, N for `local-multihost`) and
turning their exit statuses into one outcome with a message a person can act on.

If one process fails, the others are given `grace_s` to stop by themselves (jax.distributed stops
them once the dead process misses its heartbeats; a broken collective often stops them at once)
and are then killed, so a group never hangs.
"""

import dataclasses
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from hh.parallel.distributed import EXIT_PREEMPTED

POLL_S = 0.2


@dataclasses.dataclass
class Outcome:
    returncode: int        # 0 done, EXIT_PREEMPTED preempted, anything else failed
    message: str


def free_port() -> int:
    """A TCP port that was free a moment ago (the coordinator binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    if returncode == EXIT_PREEMPTED:
        return f"was preempted (exit {EXIT_PREEMPTED}: checkpoint saved)"
    if returncode > 128 and returncode - 128 in signal.Signals._value2member_map_:
        return f"exited with {returncode} ({signal.Signals(returncode - 128).name})"
    return f"exited with {returncode}"


def is_abort(returncode: int) -> bool:
    """SIGABRT: how a JAX process stops when the coordination service reports a dead peer, so when
    several are found dead at one poll the one that did not abort is the likelier cause."""
    return returncode in (-signal.SIGABRT, 128 + signal.SIGABRT)


def likeliest_cause(returncodes: list) -> int:
    """Of the processes found failed at one poll, the first that did not abort (else the first)."""
    failed = [i for i, rc in enumerate(returncodes) if rc not in (None, 0, EXIT_PREEMPTED)]
    return min(failed, key=lambda i: is_abort(returncodes[i]))


def combine(returncodes: list, first_failure) -> Outcome:
    """One outcome for the group: done if all are 0, preempted if all saved (75 or 0)."""
    codes = set(returncodes)
    if codes == {0}:
        return Outcome(0, "done")
    if codes <= {0, EXIT_PREEMPTED}:
        return Outcome(EXIT_PREEMPTED, "preempted: every process saved a checkpoint")
    parts = [f"process {i} {describe(rc)}" for i, rc in enumerate(returncodes)]
    if first_failure is None:     # all were found stopped at one poll: an abort is the likelier echo
        first_failure = likeliest_cause(returncodes)
    culprit = first_failure
    code = returncodes[culprit] if returncodes[culprit] > 0 else 128 - returncodes[culprit]
    return Outcome(code, f"process {culprit} failed first; " + "; ".join(parts))


class Group:
    """N processes started together; SIGTERM to the launcher is forwarded to all of them."""

    def __init__(self, commands: list, envs: list, logs: list, cwd=None):
        self.procs, self._files = [], []
        for command, env, log in zip(commands, envs, logs):
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            f = open(log, "a")
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
            f.flush()
            self._files.append(f)
            self.procs.append(subprocess.Popen(command, env=env, cwd=cwd, stdout=f,
                                               stderr=subprocess.STDOUT))

    @property
    def pids(self) -> list:
        return [p.pid for p in self.procs]

    def signal_all(self, signum):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signum)

    def wait(self, grace_s: float, timeout_s: float = 0) -> Outcome:
        start, failed_at, first_failure = time.monotonic(), None, None
        while any(p.poll() is None for p in self.procs):
            now = time.monotonic()
            failed = [i for i, p in enumerate(self.procs) if p.poll() not in (None, 0, EXIT_PREEMPTED)]
            if failed and first_failure is None:
                codes = [p.returncode if i in failed else None for i, p in enumerate(self.procs)]
                first_failure, failed_at = likeliest_cause(codes), now
            if failed_at is not None and now - failed_at > grace_s:
                self.signal_all(signal.SIGKILL)     # they would hang in a collective
            if timeout_s and now - start > timeout_s:
                self.signal_all(signal.SIGKILL)
                for p in self.procs:
                    p.wait()
                self._close()
                return Outcome(124, f"timed out after {timeout_s:.0f} s and was killed")
            time.sleep(POLL_S)
        self._close()
        return combine([p.returncode for p in self.procs], first_failure)

    def _close(self):
        for f in self._files:
            f.close()


def cpu_env(devices: int, base=None) -> dict:
    """The environment of one CPU process with `devices` fake devices (replacing any count set)."""
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    return env
