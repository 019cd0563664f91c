"""Hugging Face directory -> hh architecture and params, created directly in their shardings.

`imported_fields` reads config.json (and the tokenizer, whose added tokens may extend the
vocabulary); `load_hf_params` builds every parameter with `jax.make_array_from_callback` from
memory-mapped safetensors, so each device reads only its own slice and no host holds the whole
model (multi-host: each process reads only for its addressable devices).
"""

import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

from hh.checkpoints import hf_config, layouts
from hh.checkpoints.recipes import Stacked, WithNewRows
from hh.checkpoints.safetensors_dir import INDEX_FILE, SINGLE_FILE, CheckpointFormatError, SafetensorsDir
from hh.models.transformer import TransformerConfig, TransformerLM
from hh.parallel import sharding as shd


def is_hf_directory(path) -> bool:
    """A directory with a config.json naming a model_type and safetensors weights."""
    if not path:
        return False
    path = epath.Path(path)
    if not (path / hf_config.CONFIG_FILE).exists():
        return False
    return (path / SINGLE_FILE).exists() or (path / INDEX_FILE).exists()


def imported_fields(path, tokenizer=None) -> tuple[str, dict]:
    """-> (family, TransformerConfig architecture fields); the vocabulary grows to fit `tokenizer`."""
    hf = hf_config.read_hf_config(path)
    family, fields = hf_config.architecture_from_hf(hf, f"{epath.Path(path) / hf_config.CONFIG_FILE}")
    if tokenizer is not None:
        fields["vocab_size"] = max(fields["vocab_size"], tokenizer.vocab_size)
    return family, fields


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}/"))
        return out
    return {prefix[:-1]: tree}


def _unflatten(flat):
    tree = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _recipe_for(path, recipes, cfg):
    """The recipe of one hh parameter path; scanned stacks ("stack/layers/...") stack layers."""
    if path.startswith("stack/layers/"):
        rest = path[len("stack/layers/"):]
        return Stacked(tuple(recipes[f"stack/layer_{i}/{rest}"] for i in range(cfg.n_layers)))
    return recipes[path]


def _patterns(allow_unused) -> tuple:
    """allow_unused as a tuple of regexes (one string is one pattern, not its characters)."""
    return (allow_unused,) if isinstance(allow_unused, str) else tuple(allow_unused or ())


def check_all_used(path, family, names, used, allow_unused=()):
    """A checkpoint tensor the layout does not read would be dropped silently (an untied head read
    as tied gives wrong logits), so it is an error unless a regex of `allow_unused` matches all of
    its name; the family's known buffers (layouts.KNOWN_BUFFERS) are not weights and are skipped."""
    allowed = [re.compile(p) for p in (layouts.KNOWN_BUFFERS[family], *_patterns(allow_unused))]
    unused = [n for n in names if n not in used and not any(p.fullmatch(n) for p in allowed)]
    if unused:
        raise CheckpointFormatError(
            f"{path}: {len(unused)} checkpoint tensors are not used by this {family} config, e.g. "
            f"{unused[:5]}; importing without them would change the model. If they are meant to be "
            f"dropped, pass allow_unused=(regex, ...) matching their full names (\".*\" allows all)")


def param_recipes(path, cfg, abstract_params, new_token_ids=(), original_vocab_size=None,
                  allow_unused=()) -> dict:
    """hh param path -> recipe, checked against the shapes the model expects; every checkpoint
    tensor must be used (see `check_all_used`)."""
    hf = hf_config.read_hf_config(path)
    family = hf_config.family_of(hf)
    source = SafetensorsDir(path)
    recipes = layouts.import_recipes(family, cfg, source)
    n_original = original_vocab_size or hf["vocab_size"]
    out = {}
    for name, abstract in _flatten(abstract_params).items():
        if name not in recipes and not name.startswith("stack/layers/"):
            raise CheckpointFormatError(f"{path}: the hh model has parameter {name!r} {abstract.shape} "
                                        f"that a {family} checkpoint does not provide")
        recipe = _recipe_for(name, recipes, cfg)
        vocab_axis = {"embed/embedding": 0, "lm_head/kernel": 1}.get(name)
        if vocab_axis is not None and (new_token_ids or abstract.shape[vocab_axis] != recipe.shape[vocab_axis]):
            recipe = WithNewRows(recipe, abstract.shape[vocab_axis], vocab_axis, tuple(new_token_ids),
                                 min(n_original, recipe.shape[vocab_axis]))
        if tuple(recipe.shape) != tuple(abstract.shape):
            raise CheckpointFormatError(f"{path}: parameter {name!r} expects shape {tuple(abstract.shape)} "
                                        f"but the checkpoint gives {tuple(recipe.shape)}")
        out[name] = recipe
    check_all_used(path, family, source.names(), {r.name for r in recipes.values()}, allow_unused)
    return out


def load_hf_params(path, abstract_params, cfg, new_token_ids=(), original_vocab_size=None, allow_unused=()):
    """Params (a pytree like `abstract_params`, whose leaves carry `.sharding`) read from `path`.

    new_token_ids: ids the tokenizer added (hh.data.hf_tokenizer), initialised to the mean row.
    allow_unused: regexes of checkpoint tensor names that may be left unread (else an error).
    """
    start = time.perf_counter()
    recipes = param_recipes(path, cfg, abstract_params, new_token_ids, original_vocab_size, allow_unused)
    flat_abstract = _flatten(abstract_params)

    def build(name):
        abstract, recipe = flat_abstract[name], recipes[name]
        dtype = np.dtype(abstract.dtype)
        return jax.make_array_from_callback(
            tuple(abstract.shape), abstract.sharding,
            lambda index: np.asarray(recipe.read(index), dtype=np.float32).astype(dtype))

    params = _unflatten({name: build(name) for name in flat_abstract})
    logging.info("loaded %s in %.2f s", path, time.perf_counter() - start)
    return params


def load_hf_model(path, mesh=None, rules=(), tokenizer=None, allow_unused=(), **overrides):
    """-> (TransformerConfig, params) of a Hugging Face directory, sharded on `mesh`.

    rules: the logical-axis rules of the caller's config (config.sharding.rules, as
    hh.train.runtime.mesh_and_rules returns them); the default () replicates every parameter.
    The default mesh is every device on the data axis.
    `overrides` set non-architecture fields (dtype, param_dtype, scan_layers, remat, attention).
    `allow_unused`: regexes of checkpoint tensors that may be left unread (`load_hf_params`).
    """
    _, fields = imported_fields(path, tokenizer)
    cfg = TransformerConfig(**{**fields, **overrides})
    mesh = mesh if mesh is not None else shd.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    model = TransformerLM(cfg)
    # parameter shapes do not depend on the length of the tokens traced through init
    tokens = jnp.zeros((1, 8), jnp.int32)
    abstract = shd.abstract_with_shardings(lambda rng: model.init(rng, tokens)["params"], mesh, rules)
    new_ids = tokenizer.new_token_ids if tokenizer is not None and hasattr(tokenizer, "new_token_ids") else ()
    original = getattr(tokenizer, "original_vocab_size", None)
    return cfg, load_hf_params(path, abstract, cfg, new_ids, original, allow_unused)
