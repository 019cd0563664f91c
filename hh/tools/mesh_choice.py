"""A valid (data, fsdp, tensor) mesh for a config on a given number of devices.

A stage config names its mesh for the slice it was sized on; on a larger slice the same axes can
stop dividing the batch (PPO's minibatch of 512 / 4 rows over 512 devices) or the model (heads
over the tensor axis). `propose_mesh` walks the meshes of that many devices in the order that
keeps the most memory free and the least communication: the smallest tensor axis first (tensor
parallelism all-reduces activations every layer), then the smallest data axis (data parallelism
replicates parameters and optimizer state; FSDP shards them), and returns the first one the
stage's own checks accept. The fit check (hh.tools.fit) and the launcher (launch/sweep.py) use it.
"""

import copy

from hh.config import ConfigError


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def mesh_candidates(n_devices: int) -> list[dict]:
    """Every {"data", "fsdp", "tensor"} with data × fsdp × tensor = n_devices, smallest tensor
    first, then smallest data (largest fsdp)."""
    return [{"data": data, "fsdp": n_devices // (tensor * data), "tensor": tensor}
            for tensor in divisors(n_devices) for data in divisors(n_devices // tensor)]


def propose_mesh(config, n_devices: int, check) -> dict | None:
    """The first of mesh_candidates(n_devices) for which check(config with that mesh, n_devices)
    raises no ConfigError (check: a stage's validation, e.g. hh.tools.fit's); None if none does.
    `config` is not changed."""
    for mesh in mesh_candidates(n_devices):
        candidate = copy.deepcopy(config)
        candidate.mesh = type(config.mesh)(mesh)
        try:
            check(candidate, n_devices)
        except ConfigError:
            continue
        return mesh
    return None
