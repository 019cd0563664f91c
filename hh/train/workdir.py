"""A finished run's workdir, read: its config, model config, tokenizer, checkpoint steps and params.

Every loader of a trained model (the next stage's `init_from`, the PPO reference and reward
models, the evaluations, the online rounds, the pipeline's step outputs) reads a workdir through
this module, so what makes a folder an hh workdir, and the errors when it is not, are stated once.
Paths go through etils.epath: a gs:// workdir reads like a local one.

Restores need an abstract tree whose leaves carry the *current* mesh's shardings:
`hh.parallel.sharding.abstract_with_shardings` builds it from an init function without allocating anything.
"""

import contextlib
import json

import ml_collections
import orbax.checkpoint as ocp

from hh.config import ConfigError
from hh.data import sources
from hh.models.transformer import TransformerConfig
from hh.train.checkpoint import Checkpointer, absolute

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


class WorkdirError(ConfigError, FileNotFoundError):
    """A workdir, or the checkpoint step asked of it, is missing. Both a ConfigError (a config
    field such as init_from names a folder that is not a finished run) and a FileNotFoundError
    (a tool was pointed at one)."""


def read_config(workdir, field: str = "") -> dict:
    """The resolved config the run wrote (config.json), as a dict. field: the config field that named
    the workdir (e.g. "init_from"), for the error message."""
    path = absolute(workdir)
    if not (path / CONFIG_FILE).exists() or not (path / CHECKPOINT_DIR).exists():
        named = f"config.{field}={str(workdir)!r}" if field else repr(str(workdir))
        raise WorkdirError(f"{named} is not an hh workdir (needs {CONFIG_FILE} and {CHECKPOINT_DIR}/)")
    return json.loads((path / CONFIG_FILE).read_text())


def read_model_config(workdir) -> TransformerConfig:
    """The run's transformer architecture (its config's `model` section)."""
    return TransformerConfig(**read_config(workdir)["model"])


def read_tokenizer(workdir, data_config: dict | None = None):
    """The tokenizer the run used: bytes, its saved SentencePiece model, or its directory's.
    data_config: the run's `data` section when the caller has already read it."""
    path = absolute(workdir)
    data = ml_collections.ConfigDict(data_config if data_config is not None else read_config(workdir)["data"])
    saved = path / sources.TOKENIZER_DIR / "tokenizer.model"
    if data.tokenizer == "sentencepiece" and not saved.exists():
        # run_tokenizer would otherwise train a new model on no documents
        raise WorkdirError(f"{str(workdir)!r} trained a SentencePiece model but {saved} is missing")
    return sources.run_tokenizer(data, None, str(path))


@contextlib.contextmanager
def open_checkpoints(workdir):
    """A Checkpointer on the workdir's checkpoints for reading: it keeps every step, so nothing
    is ever deleted, and saves synchronously. Closed on exit."""
    ckpt = Checkpointer(absolute(workdir) / CHECKPOINT_DIR, keep=10**6, every=1, async_save=False)
    try:
        yield ckpt
    finally:
        ckpt.close()


def checkpoint_steps(workdir) -> list[int]:
    """The steps of the workdir's complete checkpoints, ascending ([] when it has none yet).

    Listed from the folder, not through a CheckpointManager: opening one creates the folder and
    waits at a barrier for every process, and any one process may ask."""
    return sorted(ocp.utils.checkpoint_steps(absolute(workdir) / CHECKPOINT_DIR))


def latest_step(workdir) -> int | None:
    """The newest checkpoint's step, or None."""
    steps = checkpoint_steps(workdir)
    return steps[-1] if steps else None


def _checked_step(workdir, step: int | None = None) -> int:
    """`step` if the workdir has a checkpoint there, the latest when None; WorkdirError otherwise."""
    steps = checkpoint_steps(workdir)
    if step is None:
        if not steps:
            raise WorkdirError(f"{workdir} has no checkpoint")
        return steps[-1]
    if step not in steps:
        raise WorkdirError(f"{workdir} has no checkpoint at step {step} (it has {steps})")
    return step


def restore_params(workdir, abstract, step: int | None = None, subtree: str | None = None):
    """-> (step, params) of the workdir's checkpoint `step` (default: the latest), placed as the
    leaves of `abstract` (ShapeDtypeStructs with shardings) say; optimizer state is not read.

    subtree: restore only params[subtree] (a PPO policy without its value model); `abstract`
    then describes that subtree."""
    step = _checked_step(workdir, step)
    with open_checkpoints(workdir) as ckpt:
        if subtree is None:
            return step, ckpt.restore_params(step, abstract)
        return step, ckpt.restore_params(step, {subtree: abstract})[subtree]

