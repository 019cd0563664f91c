"""The `tpu` backend: Cloud TPU VM slices driven through `gcloud`.

For each topology the sweep needs, one slice named `<prefix>-<accelerator type>`: reused if it
exists, else created (directly, or as a queued resource with --queued). Then the code (this
checkout, with uncommitted changes, as a tarball) is copied to every worker and installed, and
each run is the same `python -m hh.main ... --jax_distributed` on `--worker=all`, writing to a
shared `gs://` workdir. A run that exits with EXIT_PREEMPTED (maintenance: it saved) is started
again; a slice that was itself preempted (spot) is recreated and the run resumes from its last
checkpoint. Logs come back from every worker; `--delete` removes the slices at the end.
`--dry-run` prints every command instead of running it.
"""

import dataclasses
import math
import shlex
import subprocess
import time
from pathlib import Path

from launch import manifest as mf
from hh.parallel.distributed import EXIT_PREEMPTED

# gcloud's accelerator-type names count TensorCores on v4/v5p (2 per chip) and chips on v5e/v6e.
CORES_PER_CHIP = {"v4": 2, "v5p": 2, "v5e": 1, "v6e": 1}
TYPE_PREFIX = {"v4": "v4", "v5p": "v5p", "v5e": "v5litepod", "v6e": "v6e"}
# Software versions that Cloud TPU documents for each generation (cloud.google.com/tpu/docs/runtimes).
RUNTIME_VERSION = {"v4": "tpu-ubuntu2204-base", "v5p": "v2-alpha-tpuv5", "v5e": "v2-alpha-tpuv5-lite",
                   "v6e": "v2-alpha-tpuv6e"}
CHIPS_PER_HOST = 4
SINGLE_HOST_MAX_CHIPS = {"v5e": 8, "v6e": 8}   # v5litepod-8 and v6e-8 are one 8-chip host
REMOTE_CODE, REMOTE_LOGS, TARBALL = "~/hh", "~/hh-logs", "hh-code.tar.gz"
SSH_FAILED = 255   # ssh's own status: the worker could not be reached (e.g. a preempted slice)


def parse_topology(topology: str) -> tuple:
    """"v5p:2x2x2" -> ("v5p", 8 chips)."""
    generation, sep, shape = topology.partition(":")
    if not sep or generation not in CORES_PER_CHIP:
        raise ValueError(f"topology {topology!r}: expected GEN:AxB[xC] with GEN in {sorted(CORES_PER_CHIP)}")
    try:
        chips = math.prod(int(s) for s in shape.split("x"))
    except ValueError:
        raise ValueError(f"topology {topology!r}: the shape must be integers joined by 'x'") from None
    return generation, chips


def accelerator_type(topology: str) -> str:
    """"v5p:2x2x2" -> "v5p-16"; "v5e:4x4" -> "v5litepod-16"."""
    generation, chips = parse_topology(topology)
    return f"{TYPE_PREFIX[generation]}-{chips * CORES_PER_CHIP[generation]}"


def num_hosts(topology: str) -> int:
    generation, chips = parse_topology(topology)
    if chips <= SINGLE_HOST_MAX_CHIPS.get(generation, CHIPS_PER_HOST):
        return 1
    return chips // CHIPS_PER_HOST


@dataclasses.dataclass
class TpuOptions:
    zone: str
    project: str = ""
    prefix: str = "hh"
    runtime_version: str = ""        # default: RUNTIME_VERSION of the generation
    spot: bool = False
    queued: bool = False             # queued resources instead of a direct create
    workdir_root: str = ""           # gs://bucket/path: every worker reads and writes it
    delete: bool = False
    dry_run: bool = False
    max_restarts: int = 3
    install: str = "pip install -q -e '.[tpu]'"
    poll_s: float = 60.0             # queued resources: seconds between state checks
    max_polls: int = 24 * 60         # a day at the default interval


class Gcloud:
    """Runs gcloud (or, dry, prints it). Every call is also appended to `self.calls`."""

    def __init__(self, opts: TpuOptions, echo=print):
        self.opts, self.echo, self.calls = opts, echo, []

    def scope(self) -> list:
        return [f"--zone={self.opts.zone}"] + ([f"--project={self.opts.project}"] if self.opts.project else [])

    def output(self, *args, dry_rc=0, dry_output="") -> tuple:
        """-> (exit status, stdout) of a query such as describe."""
        command = ["gcloud", *args]
        self.calls.append(command)
        if self.opts.dry_run:
            self.echo(shlex.join(command))
            return dry_rc, dry_output
        done = subprocess.run(command, capture_output=True, text=True)
        return done.returncode, done.stdout.strip()

    def __call__(self, *args, log=None, dry_rc=0) -> int:
        command = ["gcloud", *args]
        self.calls.append(command)
        if self.opts.dry_run:
            self.echo(shlex.join(command))
            return dry_rc
        if log is None:
            return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            return subprocess.run(command, stdout=f, stderr=subprocess.STDOUT).returncode


class TpuBackend:
    def __init__(self, opts: TpuOptions, echo=print):
        if not opts.workdir_root or "://" not in opts.workdir_root:
            raise ValueError("--backend=tpu needs --workdir_root=gs://BUCKET/PATH: every worker of a "
                             "slice must read and write the same checkpoints")
        self.opts, self.echo = opts, echo
        self.gcloud = Gcloud(opts, echo)

    # ---------------------------------------------------------------- one slice

    def slice_name(self, topology: str) -> str:
        return f"{self.opts.prefix}-{accelerator_type(topology)}"

    def ensure_slice(self, topology: str):
        """Reuses the slice if it is READY; recreates it if it exists in another state (PREEMPTED,
        TERMINATED); creates it if it does not exist. (A dry run assumes it does not.)"""
        name, g, o = self.slice_name(topology), self.gcloud, self.opts
        rc, state = g.output("compute", "tpus", "tpu-vm", "describe", name, *g.scope(),
                             "--format=value(state)", dry_rc=1)
        if rc == 0 and state == "READY":
            return
        if rc == 0:
            self.echo(f"[launch] slice {name} is {state or 'in an unknown state'}: recreating it")
            self.delete_slice(topology)
        generation, _ = parse_topology(topology)
        version = o.runtime_version or RUNTIME_VERSION[generation]
        common = [f"--accelerator-type={accelerator_type(topology)}", *(["--spot"] if o.spot else [])]
        if o.queued:
            self._check(g("compute", "tpus", "queued-resources", "create", name, f"--node-id={name}",
                          *g.scope(), *common, f"--runtime-version={version}"), "queued-resources create")
            self.wait_active(name)
        else:
            self._check(g("compute", "tpus", "tpu-vm", "create", name, *g.scope(), *common,
                          f"--version={version}"), "tpu-vm create")

    def wait_active(self, name: str):
        """Polls the queued resource until its TPU is provisioned (ACTIVE) or the request failed."""
        g = self.gcloud
        for _ in range(self.opts.max_polls):
            rc, state = g.output("compute", "tpus", "queued-resources", "describe", name, *g.scope(),
                                 "--format=value(state.state)", dry_output="ACTIVE")
            if rc == 0 and state == "ACTIVE":
                return
            if state in ("FAILED", "SUSPENDED"):
                raise RuntimeError(f"queued resource {name} is {state}: see `gcloud compute tpus "
                                   f"queued-resources describe {name}`")
            time.sleep(self.opts.poll_s)
        raise RuntimeError(f"queued resource {name} not ACTIVE after {self.opts.max_polls} polls")

    def copy_code(self, topology: str, tarball: Path):
        name, g = self.slice_name(topology), self.gcloud
        self._check(g("compute", "tpus", "tpu-vm", "scp", str(tarball), f"{name}:~/{TARBALL}",
                      "--worker=all", *g.scope()), "scp code")
        setup = (f"rm -rf {REMOTE_CODE} && mkdir -p {REMOTE_CODE} {REMOTE_LOGS} && "
                 f"tar xzf ~/{TARBALL} -C {REMOTE_CODE} && cd {REMOTE_CODE} && {self.opts.install}")
        self._check(self.ssh(topology, setup), "install")

    def ssh(self, topology: str, command: str, log=None) -> int:
        g = self.gcloud
        return g("compute", "tpus", "tpu-vm", "ssh", self.slice_name(topology), "--worker=all",
                 *g.scope(), f"--command={command}", log=log)

    def delete_slice(self, topology: str):
        name, g = self.slice_name(topology), self.gcloud
        if self.opts.queued:
            g("compute", "tpus", "queued-resources", "delete", name, *g.scope(), "--force", "--quiet")
        else:
            g("compute", "tpus", "tpu-vm", "delete", name, *g.scope(), "--quiet")

    def collect_logs(self, topology: str, run_name: str, log_dir: Path):
        g = self.gcloud
        for worker in range(num_hosts(topology)):
            g("compute", "tpus", "tpu-vm", "scp", f"{self.slice_name(topology)}:{REMOTE_LOGS}/{run_name}.log",
              str(log_dir / f"{run_name}.w{worker}.log"), f"--worker={worker}", *g.scope())

    @staticmethod
    def _check(rc, what):
        if rc != 0:
            raise RuntimeError(f"gcloud {what} failed with exit status {rc}")

    # ---------------------------------------------------------------- runs

    def workdir(self, run) -> str:
        return f"{self.opts.workdir_root.rstrip('/')}/{run.name}"

    def remote_command(self, run, workdir: str) -> str:
        argv = ["python3", "-m", "hh.main", *run.flags(), "--workdir", workdir, "--jax_distributed"]
        return f"cd {REMOTE_CODE} && {shlex.join(argv)} >> {REMOTE_LOGS}/{run.name}.log 2>&1"

    def command_preview(self, run, workdir) -> list:
        """-> [command]: the one gcloud call that runs `run` (the local backends list one per process)."""
        return [["gcloud", "compute", "tpus", "tpu-vm", "ssh", "<slice>", "--worker=all",
                 f"--command={self.remote_command(run, workdir)}"]]

    def run_one(self, run, topology, manifest: mf.Manifest, log_dir: Path, tarball: Path):
        workdir = manifest.runs[run.name]["workdir"]
        while True:
            manifest.update(run.name, status=mf.RUNNING, slice=self.slice_name(topology))
            rc = self.ssh(topology, self.remote_command(run, workdir), log=log_dir / f"{run.name}.ssh.log")
            self.collect_logs(topology, run.name, log_dir)
            attempts = manifest.runs[run.name]["attempts"]
            if rc == 0:
                manifest.update(run.name, status=mf.DONE, returncode=0)
                return
            retry = rc in (EXIT_PREEMPTED, SSH_FAILED) and attempts <= self.opts.max_restarts
            manifest.update(run.name, status=mf.PREEMPTED if retry or rc == EXIT_PREEMPTED else mf.FAILED,
                            returncode=rc)
            if not retry:
                self.echo(f"[launch] {run.name}: failed with exit status {rc}; logs in {log_dir}")
                return
            if rc == SSH_FAILED:   # the slice itself may be gone (spot preemption): recreate it
                self.echo(f"[launch] {run.name}: slice unreachable; recreating it and resuming")
                self.delete_slice(topology)
                self.ensure_slice(topology)
                self.copy_code(topology, tarball)
            else:
                self.echo(f"[launch] {run.name}: preempted; resuming from its checkpoint")

    def run_all(self, runs_by_topology: dict, manifest: mf.Manifest, log_dir: Path, tarball: Path):
        for topology, runs in runs_by_topology.items():
            todo = [r for r in runs if manifest.status(r.name) != mf.DONE]
            if not todo:
                continue
            self.ensure_slice(topology)
            self.copy_code(topology, tarball)
            try:
                for run in todo:
                    self.run_one(run, topology, manifest, log_dir, tarball)
            finally:
                if self.opts.delete:
                    self.delete_slice(topology)


def code_tarball(repo: Path, out: Path, dry_run=False, echo=print) -> Path:
    """This checkout as a .tar.gz, uncommitted edits of tracked files included (git stash create
    makes a commit of them without touching the working tree or the stash list)."""
    stash = subprocess.run(["git", "stash", "create"], cwd=repo, capture_output=True, text=True).stdout.strip()
    command = ["git", "archive", "--format=tar.gz", "-o", str(out), stash or "HEAD"]
    if dry_run:
        echo("# local: " + shlex.join(command[:-1] + ["<HEAD with uncommitted changes>"]))
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(command, cwd=repo, check=True)
    return out
