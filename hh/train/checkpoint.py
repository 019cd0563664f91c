"""Orbax checkpoints of the train state plus the data-iterator position, atomic and async.

Each checkpoint step holds three items: "state" (sharded arrays), "data" (the iterator's JSON
state, so a resumed run sees the same batches) and "meta" (step, the resolved config and its hash:
hh.train.resume). Orbax writes to a temporary directory and renames it when complete, so a killed
run never leaves a half checkpoint that would be restored. Restores take an abstract state carrying
the *current* mesh's shardings, and check its shapes against the saved tree's metadata first.
"""

import os

import jax
import orbax.checkpoint as ocp
from etils import epath

from hh.config import ConfigError


def absolute(path) -> epath.Path:
    """Orbax needs absolute paths; a relative local workdir is taken from the current directory."""
    path = str(path)
    return epath.Path(path if "://" in path else os.path.abspath(path))


class ShapeMismatchError(ConfigError):
    """The saved tree does not fit the one this run builds; `mismatches` lists
    (path, saved shape or None, wanted shape or None), parameters first."""

    def __init__(self, message, mismatches):
        super().__init__(message)
        self.mismatches = mismatches


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_shapes(tree) -> dict:
    """{"params/stack/layer_0/...": shape} of a tree of arrays, ShapeDtypeStructs or orbax
    ArrayMetadata (dict keys, attribute names and sequence indices all become path parts); a leaf
    without a shape (a Python scalar, scalar metadata) counts as 0-d."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(_key_name(k) for k in path): tuple(getattr(leaf, "shape", ()))
            for path, leaf in leaves}


def shape_mismatches(saved: dict, wanted: dict) -> list:
    """Paths whose shapes differ or that only one side has; parameters before optimizer state."""
    rows = [(path, saved.get(path), wanted.get(path)) for path in sorted(set(saved) | set(wanted))
            if saved.get(path) != wanted.get(path)]
    return sorted(rows, key=lambda row: not row[0].startswith("params"))


def _shape_text(shape):
    return "absent" if shape is None else str(shape)


class Checkpointer:
    def __init__(self, directory, *, keep: int, every: int, async_save: bool = True):
        self.directory = absolute(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=every, create=True,
            enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self):
        return self.manager.latest_step()

    def all_steps(self):
        return list(self.manager.all_steps())

    def save(self, step: int, state, data_state: dict, meta: dict, force: bool = False) -> bool:
        """Saves if `step` is on the save interval (or `force`); returns whether it saved."""
        return self.manager.save(step, force=force, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta)))

    def _reader(self):
        """A second manager that knows each item's handler, for metadata and `meta` alone (the
        main one learns handlers from save/restore args, and warns about items it cannot read)."""
        return ocp.CheckpointManager(self.directory, item_handlers=dict(
            state=ocp.PyTreeCheckpointHandler(), data=ocp.JsonCheckpointHandler(),
            meta=ocp.JsonCheckpointHandler()))

    def read_meta(self, step: int) -> dict:
        """The step's "meta" item, without reading any array."""
        reader = self._reader()
        try:
            return reader.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta or {}
        finally:
            reader.close()

    def saved_shapes(self, step: int) -> dict:
        """{path: shape} of the step's saved state, from orbax's metadata (no array is read)."""
        reader = self._reader()
        try:
            return leaf_shapes(reader.item_metadata(step).state)
        finally:
            reader.close()

    def check_shapes(self, step: int, abstract_tree, prefix: str = ""):
        """Raises ShapeMismatchError naming the first parameter whose saved shape differs from
        `abstract_tree`'s (orbax's own error names neither the parameter nor a config field)."""
        saved, wanted = self.saved_shapes(step), leaf_shapes(abstract_tree)
        if prefix:   # a params-only restore reads a subtree and may leave saved entries out
            saved = {k[len(prefix) + 1:]: v for k, v in saved.items() if k.startswith(prefix + "/")}
            saved = {k: v for k, v in saved.items() if k in wanted}
        rows = [(f"{prefix}/{p}" if prefix else p, a, b) for p, a, b in shape_mismatches(saved, wanted)]
        if rows:
            path, old, new = rows[0]
            more = f" (and {len(rows) - 1} more arrays)" if len(rows) > 1 else ""
            raise ShapeMismatchError(
                f"checkpoint {self.directory}/{step} does not fit this run's model: {path}: saved "
                f"{_shape_text(old)}, this run needs {_shape_text(new)}{more}", rows)

    def restore(self, step: int, abstract_state):
        """-> (state, data_state, meta) with arrays placed as `abstract_state`'s shardings say."""
        self.check_shapes(step, abstract_state)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return restored.state, restored.data, restored.meta

    def restore_params(self, step: int, abstract_params):
        """Params only (for `init_from`: LM -> PMP -> PM -> policy); optimizer state is skipped."""
        self.check_shapes(step, abstract_params, prefix="params")
        item = {"params": abstract_params}
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
            partial_restore=True)))
        return restored.state["params"]

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()
