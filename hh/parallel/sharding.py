"""Meshes, logical-to-mesh shardings, and global batches assembled from per-process data.

The model names its axes logically ("embed", "mlp", ...); the config's rules table maps names to
the three mesh axes. Nothing here knows about a particular model or stage.
"""

import contextlib
import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")


def resolve_mesh_shape(shape: dict, n_devices: int) -> tuple:
    """{'data': -1, 'fsdp': 2, 'tensor': 1} -> (n/2, 2, 1). One axis may be -1 (fill)."""
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"config.mesh has unknown axes {sorted(unknown)}; axes are {MESH_AXES}")
    sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"config.mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n_devices % known:
            raise ValueError(f"config.mesh: {n_devices} devices do not divide by the fixed axes ({known})")
        sizes[sizes.index(-1)] = n_devices // known
    if math.prod(sizes) != n_devices:
        raise ValueError(f"config.mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} "
                         f"devices, but {n_devices} are available")
    return tuple(sizes)


def make_mesh(shape: dict, devices=None) -> jax.sharding.Mesh:
    """A (data, fsdp, tensor) mesh with Auto axes (GSPMD propagation; linen needs it)."""
    devices = jax.devices() if devices is None else devices
    sizes = resolve_mesh_shape(shape, len(devices))
    return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


@contextlib.contextmanager
def sharding_context(mesh, rules):
    """The mesh and logical rules that `nn.with_logical_constraint` needs while tracing."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def rules_from_config(rules) -> tuple:
    """ConfigDict/JSON rules (lists) -> flax's tuple of (logical name, mesh axis or tuple)."""
    def mesh_axes(m):
        return tuple(m) if isinstance(m, (list, tuple)) else m
    return tuple((name, mesh_axes(m)) for name, m in rules)


def logical_shardings(boxed_tree, mesh, rules):
    """A tree of NamedShardings for a tree whose leaves are nn.Partitioned (others: replicated).
    Empty subtrees stay empty: optax keeps the box around the MaskedNode that stands for a frozen
    parameter's missing optimizer state, and an empty box needs no sharding."""
    boxed_tree = jax.tree.map(lambda x: x.unbox(apply_constraint=False) if not jax.tree.leaves(x) else x,
                              boxed_tree, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))
    specs = nn.get_partition_spec(boxed_tree)
    return jax.tree.map(lambda spec: logical_sharding(spec, mesh, rules), specs, is_leaf=lambda x: isinstance(x, P))


def logical_sharding(axes, mesh, rules) -> NamedSharding:
    """The NamedSharding of one array whose dims have the logical names `axes`."""
    return NamedSharding(mesh, nn.logical_to_mesh_axes(axes, rules))


def batch_sharding(mesh, rules) -> NamedSharding:
    """Sharding of [batch, length] model inputs."""
    return logical_sharding(("batch", "length"), mesh, rules)


def row_sharding(batch_sh: NamedSharding, ndim: int) -> NamedSharding:
    """Rows (dim 0) split over the batch axes of `batch_sh`, every other dim whole: the layout of
    any per-example array (tokens, rewards, teacher targets). A scalar (ndim 0) is replicated."""
    if ndim == 0:
        return NamedSharding(batch_sh.mesh, P())
    return NamedSharding(batch_sh.mesh, P(batch_sh.spec[0], *([None] * (ndim - 1))))


def row_shardings(batch_sh: NamedSharding, tree):
    """`row_sharding` for every array (or ShapeDtypeStruct) in a tree, by its rank."""
    return jax.tree.map(lambda x: row_sharding(batch_sh, np.ndim(x)), tree)


def process_row_range(sharding: NamedSharding, global_batch_size: int) -> tuple:
    """The contiguous rows [start, stop) of the global batch that this process must provide."""
    index_map = sharding.addressable_devices_indices_map((global_batch_size, 1))
    starts = [idx[0].start or 0 for idx in index_map.values()]
    stops = [global_batch_size if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
    start, stop = min(starts), max(stops)
    covered = set()
    for a, b in zip(starts, stops):
        covered.update(range(a, b))
    if covered != set(range(start, stop)):
        raise ValueError("this process's batch rows are not contiguous under the mesh; "
                         "order the mesh so that the batch axes are process-major")
    return start, stop


def make_global_batch(local_batch: dict, sharding: NamedSharding, global_batch_size: int) -> dict:
    """Per-process numpy rows -> global jax.Arrays (the same code on 1 or many hosts)."""
    def to_global(x):
        x = np.asarray(x)
        global_shape = (global_batch_size, *x.shape[1:])
        return jax.make_array_from_process_local_data(row_sharding(sharding, x.ndim), x, global_shape)
    return {k: to_global(v) for k, v in local_batch.items()}


def sharding_report(abstract_tree, shardings) -> str:
    """One line per array: path, shape, partition spec and per-device bytes."""
    lines, total = [], 0
    flat = jax.tree_util.tree_leaves_with_path(abstract_tree)
    flat_sh = jax.tree_util.tree_leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
    for (path, leaf), sh in zip(flat, flat_sh):
        shard = sh.shard_shape(leaf.shape)
        nbytes = math.prod(shard) * np.dtype(leaf.dtype).itemsize
        total += nbytes
        lines.append(f"  {jax.tree_util.keystr(path):70s} {str(leaf.shape):22s} "
                     f"{str(sh.spec):36s} {nbytes / 2**20:10.2f} MiB/device")
    lines.append(f"  total {total / 2**30:.3f} GiB per device")
    return "\n".join(lines)


def assert_partitioned(shardings, abstract_tree, min_elements: int, mesh) -> None:
    """Fails if a weight of at least `min_elements` is fully replicated on a model-parallel mesh."""
    if mesh.shape["fsdp"] * mesh.shape["tensor"] == 1:
        return  # pure data parallelism replicates weights by design
    flat = jax.tree_util.tree_leaves_with_path(abstract_tree)
    flat_sh = jax.tree_util.tree_leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
    for (path, leaf), sh in zip(flat, flat_sh):
        if math.prod(leaf.shape) >= min_elements and sh.is_fully_replicated:
            raise AssertionError(f"{jax.tree_util.keystr(path)} {leaf.shape} is fully replicated "
                                 f"on mesh {dict(mesh.shape)}: check config.sharding.rules")


def strip_boxes(tree):
    """nn.Partitioned leaves -> their values, without sharding constraints (for abstract trees)."""
    def strip(x):
        return x.unbox(apply_constraint=False) if isinstance(x, nn.meta.AxisMetadata) else x
    return jax.tree.map(strip, tree, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def abstract_with_shardings(init_fn, mesh, rules):
    """ShapeDtypeStructs of `init_fn`'s output carrying their NamedShardings on `mesh`.

    init_fn(rng) -> a boxed tree (nn.Partitioned leaves, as `model.init` gives: params, or a whole
    train state). Only shapes are traced; the key is made inside the trace, so this also works
    under a mesh of devices that are not attached (ahead-of-time compiles for TPU topologies)."""
    with sharding_context(mesh, rules):
        boxed = jax.eval_shape(lambda: init_fn(jax.random.key(0)))
    shardings = logical_shardings(boxed, mesh, rules)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        strip_boxes(boxed), shardings)
