"""Starting a stage from a Hugging Face directory: `--config.init_from=PATH`.

`adopt_imported_architecture(config)` replaces the architecture fields of `config.model` with the
checkpoint's and points `config.data.tokenizer` at the checkpoint's tokenizer (execution fields
such as dtype, remat, scan and the attention kernel stay the run's); stages call it before
validating. `imported_params` then reads the weights straight into the state's shardings.
"""

from hh.checkpoints import hf_config
from hh.checkpoints.hf_import import imported_fields, is_hf_directory, load_hf_params
from hh.data.tokenizer import load_tokenizer


def init_from_hf(config) -> str:
    """The Hugging Face directory the config starts from, or "" (none, or an hh workdir)."""
    path = str(config.get("init_from", "") or "")
    return path if is_hf_directory(path) else ""


def _typed(old, new):
    """ml_collections fixes a field's type: keep floats floats (an int rope theta in config.json)."""
    if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        return float(new)
    return new


def adopt_imported_architecture(config) -> bool:
    """Mutates `config` for an HF `init_from`; returns whether it did. Idempotent."""
    path = init_from_hf(config)
    if not path:
        return False
    tokenizer = load_tokenizer(path)
    _, fields = imported_fields(path, tokenizer)
    with config.unlocked():
        for name in hf_config.ARCHITECTURE_FIELDS:
            config.model[name] = _typed(config.model.get(name), fields[name])
        config.data.tokenizer = path
    return True


def imported_params(path, abstract_params, model_cfg, tokenizer, allow_unused=()):
    """The LM params of the Hugging Face directory `path` in the shardings `abstract_params` carries.

    allow_unused: regexes of checkpoint tensors that may be left unread (else CheckpointFormatError).
    """
    return load_hf_params(path, abstract_params, model_cfg, getattr(tokenizer, "new_token_ids", ()),
                          getattr(tokenizer, "original_vocab_size", None), allow_unused)
