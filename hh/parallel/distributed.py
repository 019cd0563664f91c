"""Joining JAX's multi-controller runtime (jax.distributed), and the exit status of a preempted run.

Every process runs the same program; after `initialize`, `jax.devices()` lists the devices of all
processes, a mesh spans them, and each process feeds only its own rows of the global batch
(hh.parallel.sharding.make_global_batch). There is no distribution layer of our own.

- On a TPU pod slice, `initialize(auto=True)` lets JAX find the coordinator from the TPU metadata.
- Elsewhere (and in the tests: N processes with CPU devices on one machine) the launcher passes
  the coordinator's address, the process count and this process's id.

If a process dies, the coordination service notices its missing heartbeats and stops every other
process with an error, after `heartbeat_timeout_s`. A run therefore fails in bounded time and does
not hang in a collective. The launcher then resumes it from the last checkpoint.
"""

from absl import flags
import jax

# A preempted run saved a checkpoint and should simply be started again: sysexits.h EX_TEMPFAIL
# ("a temporary failure; the user is invited to retry"). The launcher resumes runs that exit so.
EXIT_PREEMPTED = 75

# JAX's own default heartbeat timeout (jax.distributed.initialize).
DEFAULT_HEARTBEAT_TIMEOUT_S = 100


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S, auto: bool = False) -> bool:
    """Joins the multi-controller runtime; returns whether it did.

    coordinator_address "host:port" with num_processes and process_id: explicit (any platform).
    auto: JAX detects the cluster (Cloud TPU VMs, SLURM, ...). Neither: one process, nothing done.
    Must run before anything touches a JAX backend.
    """
    if not coordinator_address and not auto:
        return False
    if coordinator_address and (num_processes < 1 or not 0 <= process_id < num_processes):
        raise ValueError(f"--coordinator_address={coordinator_address} needs --num_processes >= 1 "
                         f"and 0 <= --process_id < num_processes (got {num_processes}, {process_id})")
    # CPU devices of different processes talk over gloo (TPU and GPU use their own interconnect;
    # the option only affects the CPU client).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = dict(heartbeat_timeout_seconds=heartbeat_timeout_s)
    if coordinator_address:
        kwargs.update(coordinator_address=coordinator_address, num_processes=num_processes,
                      process_id=process_id)
    jax.distributed.initialize(**kwargs)
    return True


def define_flags():
    """The command-line flags of `initialize`, for the entry points (hh.main, hh.pipeline)."""
    flags.DEFINE_bool("jax_distributed", False, "join jax.distributed with the cluster found by JAX "
                      "(multi-host TPU pod slices: run the same command on every host)")
    flags.DEFINE_string("coordinator_address", "", "host:port of process 0, for an explicit "
                        "multi-process run (the launcher's local-multihost backend sets it)")
    flags.DEFINE_integer("num_processes", 0, "with --coordinator_address: how many processes")
    flags.DEFINE_integer("process_id", -1, "with --coordinator_address: this process's index")
    flags.DEFINE_integer("heartbeat_timeout_s", DEFAULT_HEARTBEAT_TIMEOUT_S,
                         "a process silent this long is declared dead and the others stop")


def initialize_from_flags() -> bool:
    """`initialize` with the values of the flags `define_flags` defined."""
    f = flags.FLAGS
    return initialize(f.coordinator_address, f.num_processes, f.process_id, f.heartbeat_timeout_s,
                      auto=f.jax_distributed)


def one_at_a_time(tree):
    """Waits for `tree` when several processes run: computations that do not depend on each other
    would otherwise run at once under async dispatch, and on CPU (gloo) their cross-process
    collectives can pair up wrongly and deadlock. A no-op in one process."""
    return jax.block_until_ready(tree) if jax.process_count() > 1 else tree
