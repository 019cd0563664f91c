"""The capacity grid of the findings job (F1, F11): PM accuracy on held-out entities against trunk
size and comparison count, and with or without PMP (Askell et al. 2021 §3–5; Bai et al. 2022 §3.3).

For each seed, an LM of the main job's LM recipe at every trunk of `capacity.sizes` (the main
trunk's LM is the seed's main job LM, not trained again), then a PM of the main job's PM recipe
from each LM directly (no PMP, as the size scans finetune the LM), at the main PM's pair count;
at the main trunk also PMs on pair_factors × those pairs, and at the smallest factor a PM from a
PMP checkpoint. Every run goes through hh.main.run in its own folder, so an interrupted grid
resumes (a finished run resumes at its end and is only evaluated).
"""

import copy
import json
import re

from etils import epath

from hh import main
from hh.data import synthetic
from hh.data.sources import TOKENIZER_DIR
from hh.io import atomic_write_text
from hh.trained import LoadedPM

_TRUNK = re.compile(r"^d(\d+)-l(\d+)$")


def trunk_shape(name: str) -> tuple[int, int]:
    """"d256-l2" -> (256, 2); anything else is a ValueError naming it."""
    match = _TRUNK.match(name)
    if not match:
        raise ValueError(f"capacity.sizes entry {name!r}: write d<d_model>-l<n_layers>, e.g. d256-l2")
    return int(match.group(1)), int(match.group(2))


def trunk_name(model_cfg) -> str:
    return f"d{model_cfg.d_model}-l{model_cfg.n_layers}"


def with_trunk(cfg, name: str):
    """A copy of stage config `cfg` at trunk `name`: heads of 64 (d_model/2 below 128), d_ff 4·d."""
    cfg = copy.deepcopy(cfg)
    d_model, n_layers = trunk_shape(name)
    d_head = 64 if d_model >= 128 else d_model // 2
    m = cfg.model
    m.d_model, m.n_layers, m.d_ff, m.d_head, m.n_heads = d_model, n_layers, 4 * d_model, d_head, d_model // d_head
    return cfg


def non_embedding_params(name: str) -> int:
    """Attention (4·d²) and MLP (2·d·4d) weights per layer, as Kaplan et al. count N."""
    d_model, n_layers = trunk_shape(name)
    return 12 * n_layers * d_model * d_model


def eval_rows(world_size, n: int, seed: int) -> dict:
    """{tranche: n pairs about the test split's entities}: what no PM-training pair mentions."""
    return {kind: synthetic.comparisons(kind, n, seed, "test", world_size) for kind in synthetic.KINDS}


def held_out_accuracy(pm_dir, rows_by_kind: dict) -> float:
    """Share of held-out pairs the PM ranks right (ties count half), over both tranches."""
    pm, right = LoadedPM(str(pm_dir)), []
    for rows in rows_by_kind.values():
        chosen, rejected = pm.scores(rows)
        right += list((chosen > rejected) + 0.5 * (chosen == rejected))
    return float(sum(right) / len(right))


def run_capacity(config, folder, folders) -> dict:
    """The grid under `folder`; writes capacity.json ({"runs": [...]}) and returns headlines."""
    folder, c, m = epath.Path(folder), config.capacity, config.main
    main_trunk, main_pairs = trunk_name(m.lm.model), m.pm.data.train_pairs
    if main_trunk not in c.sizes:
        raise ValueError(f"capacity.sizes={list(c.sizes)} must include the main job's trunk {main_trunk}")
    rows = eval_rows(m.pm.data.world_size, c.eval_pairs, c.eval_seed)
    runs = []

    def pm_run(name, size, seed, init_from, pairs, pmp_from=None):
        cfg = with_trunk(m.pm, size)
        cfg.seed, cfg.init_from, cfg.data.train_pairs = seed, str(pmp_from or init_from), pairs
        cfg.data.synthetic_comparisons = max(cfg.data.synthetic_comparisons, pairs)
        main.run(cfg, str(folder / name))
        runs.append({"size": size, "params": non_embedding_params(size), "seed": seed, "pairs": pairs,
                     "pmp": pmp_from is not None, "accuracy": held_out_accuracy(folder / name, rows)})

    for seed in c.seeds:
        seed_main = folders[f"main-s{seed}"]
        lms = {}
        for size in c.sizes:
            if size == main_trunk:
                lms[size] = seed_main / "lm"
                continue
            cfg = with_trunk(m.lm, size)
            cfg.seed, cfg.data.tokenizer = seed, str(seed_main / "tokenizer" / TOKENIZER_DIR)   # the seed's own
            main.run(cfg, str(folder / f"lm-{size}-s{seed}"))
            lms[size] = folder / f"lm-{size}-s{seed}"
        for size in c.sizes:
            pm_run(f"pm-{size}-p{main_pairs}-s{seed}", size, seed, lms[size], main_pairs)
        for factor in c.pair_factors:
            pairs = int(round(main_pairs * factor))
            if pairs != main_pairs:
                pm_run(f"pm-{main_trunk}-p{pairs}-s{seed}", main_trunk, seed, lms[main_trunk], pairs)
        small = int(round(main_pairs * min(c.pair_factors)))
        pmp = copy.deepcopy(m.pmp)
        pmp.seed, pmp.init_from = seed, str(lms[main_trunk])
        main.run(pmp, str(folder / f"pmp-{main_trunk}-s{seed}"))
        pm_run(f"pm-{main_trunk}-p{small}-pmp-s{seed}", main_trunk, seed, lms[main_trunk], small,
               pmp_from=folder / f"pmp-{main_trunk}-s{seed}")
    atomic_write_text(folder / "capacity.json", json.dumps(
        {"main_trunk": main_trunk, "main_pairs": main_pairs, "eval_pairs_per_tranche": c.eval_pairs,
         "runs": runs}, indent=2) + "\n")
    return {"runs": len(runs)}
