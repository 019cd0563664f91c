"""The OOD study of Bai et al. 2022 §5.4 (Fig. 22, 23; docs/paper-notes.md §12) on a trained LM's activations.

In-distribution = helpful prompts: a Gaussian is fitted per layer to `n_fit` of them (train split)
and `n_test` held-out ones (test split) are scored beside `n_test` prompts of each OOD source
(red-team / harmless prompts). AUROC per layer for Mahalanobis and the simplified relative
Mahalanobis score, and for few-shot outlier exposure: M known OOD examples (rows of the OOD
source after the scored ones) redrawn `exposure_draws` times, mean ± std over draws (the paper's Fig. 23).
The maths is hh.eval.ood; this file only gathers activations and runs the protocol.

`python -m hh.eval.ood_study --lm WORKDIR --out DIR [--out_source hh_rlhf/harmless-base:test
--manual_dir $HH_RLHF_DIR]` writes ood.json and ood.png.
"""

import functools
import json

import jax
import numpy as np
from absl import app, flags, logging
from etils import epath

from hh.data.pm_data import as_text
from hh.data.pm_sources import parse_spec, spec_source
from hh.data.prompt_data import encode_prompt, left_padded
from hh.eval import ood
from hh.io import atomic_write_text
from hh.plots import pyplot
from hh.trained import LoadedLM

EXPOSURE_POOL = 128   # OOD prompts the M known examples are drawn from


def prompt_texts(spec: str, split: str, n: int, data_cfg, at_least: int = 0) -> list:
    """The first n prompts of a comparison source (a spec of hh.data.pm_sources; `split` unless the spec
    names one); fewer are refused below `at_least` (default n)."""
    source = spec_source(spec, split, data_cfg)
    if len(source) < (at_least or n):
        raise ValueError(f"OOD source {spec!r} ({split} split) has {len(source)} prompts; "
                         f"{at_least or n} are needed")
    return [as_text(source[i]["prompt"]) for i in range(min(n, len(source)))]


@functools.partial(jax.jit, static_argnames=("model", "pooling"))
def _pooled(params, prompts, model, pooling):
    return ood.pooled_hidden_states(params, model, prompts, pooling)


def activations(lm, texts, pooling: str = "mean", batch: int = 32):
    """texts -> [n_layers + 1, n, d_model] float64 pooled activations of a LoadedLM (prompts cut
    to the LM's context, keeping their ends; one compile: the last batch is padded)."""
    width = lm.seq_len
    out = []
    for start in range(0, len(texts), batch):
        rows = [encode_prompt(t, lm.tokenizer, width) for t in texts[start:start + batch]]
        n_real = len(rows)
        rows += [rows[0]] * (batch - n_real)
        padded = left_padded(rows, width)
        prompts = {k: padded[k] for k in ("tokens", "segment_ids", "positions")}
        out.append(np.asarray(_pooled(lm.params, prompts, lm.model, pooling))[:, :n_real])
    return np.concatenate(out, axis=1).astype(np.float64)


def exposure_aurocs(train_in, test_in, test_out, pool_out, m: int, draws: int, seed: int):
    """Outlier-exposure AUROC per layer for `draws` random choices of M OOD examples from
    pool_out [L, n_pool, d] -> [draws, L]."""
    rng = np.random.default_rng(seed)
    result = []
    for _ in range(draws):
        pick = rng.choice(pool_out.shape[1], size=m, replace=False)
        result.append(ood.layer_aurocs(train_in, test_in, test_out, pool_out[:, pick])["outlier_exposure"])
    return np.asarray(result)


def ood_study(lm, in_source: str, out_sources, n_fit: int, n_test: int, exposure_m: int = 10,
              exposure_draws: int = 5, pooling: str = "mean", seed: int = 0, data_cfg=None) -> dict:
    """The study on a LoadedLM -> report {out_source: {method: [AUROC per layer]}, best: ...}.
    in_source must not name a split: the Gaussian is fitted on its train split and scored on its
    test split, and one named split would serve both (the scored prompts among the fitted ones)."""
    if parse_spec(in_source, "train")[1] == parse_spec(in_source, "test")[1]:
        raise ValueError(f"in_source {in_source!r} names a split; give the source without one "
                         "(its train split is fitted, its test split scored)")
    data_cfg = data_cfg or lm.config.data
    train_in = activations(lm, prompt_texts(in_source, "train", n_fit, data_cfg), pooling)
    test_in = activations(lm, prompt_texts(in_source, "test", n_test, data_cfg), pooling)
    report = {"model": str(lm.workdir), "step": int(lm.step), "pooling": pooling,
              "in_source": in_source, "n_fit": n_fit, "n_test": n_test, "exposure_m": exposure_m,
              "exposure_draws": exposure_draws, "layers": int(train_in.shape[0]), "sets": {}}
    for spec in out_sources:
        # the M exposure examples come from the rows after the n_test scored ones: one split
        # serves both (real red-team data ships only a test split) and they never overlap
        texts = prompt_texts(spec, "test", n_test + EXPOSURE_POOL, data_cfg,
                             at_least=n_test + exposure_m)
        out = activations(lm, texts, pooling)
        test_out, pool = out[:, :n_test], out[:, n_test:]
        layers = ood.layer_aurocs(train_in, test_in, test_out)
        if exposure_m > 0:
            draws = exposure_aurocs(train_in, test_in, test_out, pool, exposure_m, exposure_draws, seed)
            layers["outlier_exposure"] = draws.mean(0).tolist()
            layers["outlier_exposure_std"] = draws.std(0).tolist()
        report["sets"][spec] = layers
    report["best"] = best_aurocs(report)
    return report


def best_aurocs(report: dict) -> dict:
    """Per OOD source and method: the best layer and its AUROC."""
    best = {}
    for spec, layers in report["sets"].items():
        best[spec] = {}
        for method, values in layers.items():
            if method.endswith("_std"):
                continue
            layer = int(np.argmax(values))
            best[spec][method] = {"layer": layer, "auroc": float(values[layer])}
    return best


def plot_study(report: dict, path) -> None:
    """One panel per OOD source: AUROC by layer for each method (exposure with ±1 std band)."""
    plt = pyplot()

    sets = report["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(5.0 * len(sets), 3.5), squeeze=False)
    for ax, (spec, layers) in zip(axes[0], sets.items()):
        x = np.arange(report["layers"])
        for method, values in layers.items():
            if method.endswith("_std"):
                continue
            (line,) = ax.plot(x, values, marker="o", label=method.replace("_", " "))
            if method + "_std" in layers:
                v, s = np.asarray(values), np.asarray(layers[method + "_std"])
                ax.fill_between(x, v - s, v + s, alpha=0.2, color=line.get_color())
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0.0, 1.02)
        ax.set_xticks(x)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("AUROC")
        ax.set_title(f"OOD: {spec} vs {report['in_source']}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def write_study(report: dict, out_dir) -> None:
    out_dir = epath.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "ood.json", json.dumps(report, indent=2) + "\n")
    plot_study(report, out_dir / "ood.png")


def main(argv):
    del argv
    f = flags.FLAGS
    if not f["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    lm = LoadedLM(f.lm)
    data_cfg = lm.config.data
    with data_cfg.unlocked():
        if f.manual_dir:
            data_cfg.manual_dir = f.manual_dir
        if f.tfds_data_dir:
            data_cfg.tfds_data_dir = f.tfds_data_dir
    report = ood_study(lm, f.in_source, f.out_source, f.n_fit, f.n_test, f.exposure_m,
                       f.exposure_draws, f.pooling, f.seed, data_cfg)
    write_study(report, f.out)
    for spec, methods in report["best"].items():
        for method, row in methods.items():
            print(f"{spec:>32} {method:>22}: AUROC {row['auroc']:.3f} (layer {row['layer']})")


if __name__ == "__main__":
    flags.DEFINE_string("lm", None, "an hh LM, distill or PPO workdir (the activations' model)")
    flags.DEFINE_string("in_source", "synthetic-helpful", "in-distribution prompts (a source spec naming no split)")
    flags.DEFINE_multi_string("out_source", ["synthetic-redteam"], "OOD prompts (source specs)")
    flags.DEFINE_integer("n_fit", 256, "in-distribution prompts the Gaussian is fitted to")
    flags.DEFINE_integer("n_test", 128, "held-out prompts per side")
    flags.DEFINE_integer("exposure_m", 10, "known OOD examples for outlier exposure (0: off)")
    flags.DEFINE_integer("exposure_draws", 5, "random draws of the M examples")
    flags.DEFINE_enum("pooling", "mean", list(ood.POOLINGS), "token pooling")
    flags.DEFINE_integer("seed", 0, "exposure draws")
    flags.DEFINE_string("manual_dir", "", "hh-rlhf offline copy (for hh_rlhf/... sources)")
    flags.DEFINE_string("tfds_data_dir", "", "where TFDS builds real datasets")
    flags.DEFINE_string("out", None, "output folder")
    flags.mark_flags_as_required(["lm", "out"])
    app.run(main)
