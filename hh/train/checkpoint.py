"""Orbax checkpoints of the train state plus the data-iterator position, atomic and async.

Each checkpoint step holds three items: "state" (sharded arrays), "data" (the iterator's JSON
state, so a resumed run sees the same batches) and "meta" (step, config hash). Orbax writes to a
temporary directory and renames it when complete, so a killed run never leaves a half checkpoint
that would be restored. Restores take an abstract state carrying the *current* mesh's shardings.
"""

import os

import orbax.checkpoint as ocp
from etils import epath


def absolute(path) -> epath.Path:
    """Orbax needs absolute paths; a relative local workdir is taken from the current directory."""
    path = str(path)
    return epath.Path(path if "://" in path else os.path.abspath(path))


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

    def restore(self, step: int, abstract_state):
        """-> (state, data_state, meta) with arrays placed as `abstract_state`'s shardings say."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return restored.state, restored.data, restored.meta

    def restore_params(self, step: int, abstract_params):
        """Params only (for `init_from`: LM -> PMP -> PM -> policy); optimizer state is skipped."""
        item = {"params": abstract_params}
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
            partial_restore=True)))
        return restored.state["params"]

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()
