"""One command for a sweep: expand, name, record, run.

    python -m launch.sweep --config configs/pm.py --sweep model=13M,42M,197M \\
        --sweep data.train_pairs=1000,10000 --backend local --parallel 2
    python -m launch.sweep --config configs/lm.py:smoke --sweep seed=0,1 --backend local-multihost --processes 2
    python -m launch.sweep --config configs/ppo.py --sweep model=13B --backend tpu --zone us-east5-a \\
        --workdir_root gs://BUCKET/sweeps/ppo --dry-run

Each run is `python -m hh.main --config FILE:<preset> --config.<key>=<value> ... --workdir
<root>/<name>`; `<root>/manifest.json` holds every run's config, command and status. Rerunning
the same command skips finished runs and resumes the others from their checkpoints. Exit status:
0 when every run is done, 1 if one failed, 75 if one is still preempted.
"""

import argparse
import collections
import dataclasses
import math
import sys
from pathlib import Path

from hh.parallel.distributed import EXIT_PREEMPTED
from launch import manifest as mf
from launch import tpu
from launch.local import LocalBackend, LocalOptions
from launch.spec import SweepError, expand, parse_axis

BACKENDS = ("local", "local-multihost", "tpu")
REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m launch.sweep", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="configs/<stage>.py[:<preset>] (the preset "
                   "is the default for runs whose sweep does not set model=)")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis of the product; model=<preset> picks the preset, other keys "
                        "override config fields (list values: items separated by ';')")
    p.add_argument("--file_sweep", action="store_true", help="also take the config file's get_sweep()")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V",
                   help="override a field in every run (not part of run names)")
    p.add_argument("--root", default="", help="the sweep folder (default: runs/sweeps/<stage file>)")
    p.add_argument("--backend", choices=BACKENDS, default="local")
    p.add_argument("--dry-run", action="store_true", help="print the runs and exact commands; run nothing")
    p.add_argument("--max_restarts", type=int, default=3, help="preemptions resumed per run")
    local = p.add_argument_group("local and local-multihost")
    local.add_argument("--parallel", type=int, default=1, help="runs at a time")
    local.add_argument("--processes", type=int, default=2, help="local-multihost: processes per run")
    local.add_argument("--devices_per_process", type=int, default=4,
                       help="local-multihost: fake CPU devices per process")
    local.add_argument("--heartbeat_timeout_s", type=int, default=20,
                       help="local-multihost: a silent process is declared dead after this")
    local.add_argument("--timeout_s", type=float, default=0, help="per attempt; 0: no limit")
    cloud = p.add_argument_group("tpu")
    cloud.add_argument("--zone", default="")
    cloud.add_argument("--project", default="")
    cloud.add_argument("--prefix", default="hh", help="slices are named <prefix>-<accelerator type>")
    cloud.add_argument("--topology", default="", help="e.g. v5p:2x2x2 for every run (default: "
                       "launch/slices.py's smallest slice that fits the preset)")
    cloud.add_argument("--runtime_version", default="")
    cloud.add_argument("--spot", action="store_true")
    cloud.add_argument("--queued", action="store_true", help="request slices as queued resources")
    cloud.add_argument("--workdir_root", default="", help="gs://BUCKET/PATH: run workdirs go under it")
    cloud.add_argument("--delete", action="store_true", help="delete the slices when the sweep ends")
    return p.parse_args(argv)


def _pairs(texts, flag):
    out = []
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise SweepError(f"--{flag} {text!r}: expected KEY=VALUE")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def _mesh_of_slice(topology_flag):
    """The TPU backend's default mesh: the one the fit check found for the preset's slice."""
    def per_preset(preset):
        if topology_flag or not preset:
            return ()
        from launch import slices
        return tuple((f"mesh.{axis}", size) for axis, size in slices.default_slice(preset)["mesh"].items())
    return per_preset


def slice_devices(topology: str) -> int:
    """'v5p:8x8x8' -> 512: the devices JAX sees on the slice (one per chip; v4's megacore too)."""
    _, _, shape = topology.partition(":")
    if not shape or not all(d.isdigit() for d in shape.split("x")):
        raise SweepError(f"--topology={topology!r}: use GEN:AxB[xC]")
    return math.prod(int(d) for d in shape.split("x"))


def with_slice_mesh(runs, topology: str) -> list:
    """Runs on an explicitly given --topology keep their mesh where it works on its devices; a run
    whose mesh does not (a larger slice than the preset's: the batch no longer splits) gets the
    mesh the fit check proposes (hh.tools.fit.mesh_for_slice), as mesh.* overrides, and says so."""
    import ml_collections
    from hh.tools import fit
    n, out = slice_devices(topology), []
    for run in runs:
        config = ml_collections.ConfigDict(run.config)
        _, proposed = fit.mesh_for_slice(config, n)
        if proposed:
            mesh = tuple((f"mesh.{axis}", size) for axis, size in proposed["mesh"].items())
            kept = tuple((k, v) for k, v in run.overrides if not k.startswith("mesh."))
            run = dataclasses.replace(run, overrides=kept + mesh,
                                      config={**run.config, "mesh": dict(proposed["mesh"])})
            print(f"[launch] {run.name}: mesh {proposed['config_mesh']} does not work on {topology}; "
                  f"using {proposed['mesh']}")
        out.append(run)
    return out


def topology_of(run, args) -> str:
    if args.topology:
        return args.topology
    from launch import slices
    return slices.default_slice(run.preset)["topology"]


def main(argv=None) -> int:
    args = parse_args(argv)
    config_file, _, preset = args.config.partition(":")
    try:
        runs = expand(config_file, [parse_axis(a) for a in args.sweep], default_preset=preset,
                      use_file_sweep=args.file_sweep, fixed=_pairs(args.set, "set"),
                      per_preset=_mesh_of_slice(args.topology) if args.backend == "tpu" else (lambda p: ()))
        if args.backend == "tpu" and args.topology:
            runs = with_slice_mesh(runs, args.topology)
        if args.backend == "tpu":
            if not args.zone:
                raise SweepError("--backend=tpu needs --zone")
            backend = tpu.TpuBackend(tpu.TpuOptions(
                zone=args.zone, project=args.project, prefix=args.prefix,
                runtime_version=args.runtime_version, spot=args.spot, queued=args.queued,
                workdir_root=args.workdir_root, delete=args.delete, dry_run=args.dry_run,
                max_restarts=args.max_restarts))
        else:
            processes = args.processes if args.backend == "local-multihost" else 1
            backend = LocalBackend(LocalOptions(
                parallel=args.parallel, processes=processes, devices_per_process=args.devices_per_process,
                heartbeat_timeout_s=args.heartbeat_timeout_s, max_restarts=args.max_restarts,
                timeout_s=args.timeout_s))
    except (SweepError, ValueError, KeyError) as e:
        print(f"sweep error: {e}", file=sys.stderr)
        return 2

    root = Path(args.root or REPO / "runs" / "sweeps" / Path(config_file).stem).resolve()
    workdir = backend.workdir if args.backend == "tpu" else (lambda r: str(root / r.name))
    print(f"[launch] {len(runs)} run(s) of {args.config} on {args.backend}; manifest {root / 'manifest.json'}")
    if args.dry_run and args.backend != "tpu":
        for r in runs:
            commands = backend.command_preview(r, workdir(r))
            print(f"{r.name}:\n  " + "\n  ".join(" ".join(c) for c in commands))
        return 0

    manifest = mf.Manifest(root, {"config": args.config, "axes": args.sweep, "set": args.set,
                                  "backend": args.backend, "argv": sys.argv[1:] if argv is None else list(argv)},
                           persist=not args.dry_run)
    try:
        for r in runs:
            manifest.add(r, backend.command_preview(r, workdir(r)), workdir(r))
    except SweepError as e:
        print(f"sweep error: {e}", file=sys.stderr)
        return 2
    log_dir = root / "logs"
    if args.backend == "tpu":
        by_topology = collections.defaultdict(list)
        for r in runs:
            by_topology[topology_of(r, args)].append(r)
        tarball = tpu.code_tarball(REPO, root / tpu.TARBALL, dry_run=args.dry_run)
        backend.run_all(dict(by_topology), manifest, log_dir, tarball)
    else:
        backend.run_all(runs, manifest, log_dir)
    if args.dry_run:
        print("[launch] dry run: nothing was created or run")
        return 0
    print(manifest.summary())
    statuses = {manifest.status(r.name) for r in runs}
    if mf.FAILED in statuses:
        return 1
    if statuses - {mf.DONE}:
        return EXIT_PREEMPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
