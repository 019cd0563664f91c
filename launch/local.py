"""Backends on this machine: `local` (each run one process; `parallel` runs at a time) and
`local-multihost` (each run N processes joined by jax.distributed over CPU devices, gloo).

A run that exits with EXIT_PREEMPTED saved a checkpoint; it is started again in the same workdir
(so it resumes) up to `max_restarts` times. Failed runs do not stop the others.
"""

import dataclasses
import signal
import sys
import threading
from pathlib import Path

from launch import manifest as mf
from launch.processes import Group, cpu_env, free_port
from hh.parallel.distributed import EXIT_PREEMPTED


@dataclasses.dataclass
class LocalOptions:
    parallel: int = 1             # runs at a time
    processes: int = 1            # >1: local-multihost
    devices_per_process: int = 4  # fake CPU devices of each process (local-multihost)
    heartbeat_timeout_s: int = 20
    max_restarts: int = 3         # preemptions resumed per run
    timeout_s: float = 0          # per attempt; 0: none
    python: str = sys.executable


def run_commands(run, workdir: str, opts: LocalOptions) -> tuple:
    """-> (commands, envs) of the processes of one attempt."""
    base = [opts.python, "-m", "hh.main", *run.flags(), "--workdir", workdir]
    if opts.processes == 1:
        return [base], [None]
    port = free_port()
    distributed = [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={opts.processes}",
                   f"--heartbeat_timeout_s={opts.heartbeat_timeout_s}"]
    commands = [base + distributed + [f"--process_id={i}"] for i in range(opts.processes)]
    return commands, [cpu_env(opts.devices_per_process)] * opts.processes


class LocalBackend:
    def __init__(self, opts: LocalOptions):
        self.opts = opts
        self._groups, self._lock = {}, threading.Lock()
        self._stopping = False   # the launcher got SIGTERM: let runs save, restart nothing

    def command_preview(self, run, workdir) -> list:
        return run_commands(run, workdir, self.opts)[0]

    def run_one(self, run, manifest: mf.Manifest, log_dir: Path):
        """Attempts until done, failed, or out of restarts; the manifest follows each change."""
        workdir = manifest.runs[run.name]["workdir"]
        while True:
            commands, envs = run_commands(run, workdir, self.opts)
            logs = [log_dir / (f"{run.name}.log" if len(commands) == 1 else f"{run.name}.p{i}.log")
                    for i in range(len(commands))]
            group = Group(commands, envs, logs)
            with self._lock:
                self._groups[run.name] = group
            manifest.update(run.name, status=mf.RUNNING, pids=group.pids, logs=[str(p) for p in logs])
            outcome = group.wait(grace_s=self.opts.heartbeat_timeout_s + 10, timeout_s=self.opts.timeout_s)
            with self._lock:
                self._groups.pop(run.name, None)
            if outcome.returncode == 0:
                manifest.update(run.name, status=mf.DONE, returncode=0, message=outcome.message, pids=[])
                return
            attempts = manifest.runs[run.name]["attempts"]
            if outcome.returncode == EXIT_PREEMPTED and not self._stopping and \
                    attempts <= self.opts.max_restarts:
                manifest.update(run.name, status=mf.PREEMPTED, returncode=EXIT_PREEMPTED,
                                message=outcome.message + "; resuming", pids=[])
                print(f"[launch] {run.name}: preempted; resuming from its checkpoint "
                      f"(attempt {attempts + 1})", flush=True)
                continue
            status = mf.PREEMPTED if outcome.returncode == EXIT_PREEMPTED else mf.FAILED
            manifest.update(run.name, status=status, returncode=outcome.returncode,
                            message=outcome.message, pids=[])
            print(f"[launch] {run.name}: {status}: {outcome.message}; logs: "
                  f"{', '.join(str(p) for p in logs)}", flush=True)
            return

    def _forward(self, signum, frame):
        """The launcher itself is being stopped: every run saves, then nothing restarts."""
        self._stopping = True
        with self._lock:
            for group in self._groups.values():
                group.signal_all(signal.SIGTERM)

    def run_all(self, runs, manifest: mf.Manifest, log_dir: Path):
        todo = [r for r in runs if manifest.status(r.name) != mf.DONE]
        previous = signal.signal(signal.SIGTERM, self._forward)
        try:
            queue, qlock = list(todo), threading.Lock()

            def worker():
                while True:
                    with qlock:
                        if not queue or self._stopping:
                            return
                        run = queue.pop(0)
                    print(f"[launch] {run.name}: starting", flush=True)
                    self.run_one(run, manifest, log_dir)

            threads = [threading.Thread(target=worker) for _ in range(max(1, min(self.opts.parallel, len(todo))))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            signal.signal(signal.SIGTERM, previous)
