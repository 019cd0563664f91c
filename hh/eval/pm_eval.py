"""Preference-model evaluation: `python -m hh.eval.pm_eval --workdir RUN [--workdir RUN2 ...]`.

For each PM workdir: accuracy overall, per tranche and per conversation turn (Bai et al. 2022
Fig 8), calibration with ECE and a reliability diagram (§3.3, Fig 9), and scores normalised by
their held-out mean (§3.4: accuracy when both responses score above a threshold). With several
workdirs (PMs trained on helpful fractions 0…1), the helpful-vs-harmless cross matrix (§5.1, Fig 19).
"""

import collections
import json

import numpy as np
from absl import app, flags, logging
from etils import epath

from hh.data.pm_data import as_text
from hh.data.pm_sources import parse_spec, spec_source
from hh.eval.calibration import calibration_bins, reliability_diagram
from hh.eval.gold import spec_labeler
from hh.io import atomic_write_text
from hh.plots import pyplot
from hh.trained import LoadedPM

THRESHOLDS = (-1.0, 0.0, 1.0)   # on mean-normalised scores


def accuracy(chosen, rejected) -> float:
    """Share of pairs with r_chosen > r_rejected (a tie counts half)."""
    delta = np.asarray(chosen) - np.asarray(rejected)
    return float(np.mean(np.where(delta > 0, 1.0, np.where(delta == 0, 0.5, 0.0)))) if len(delta) else float("nan")


def grouped_accuracy(chosen, rejected, keys) -> dict:
    """{key: {"accuracy", "pairs"}} for each distinct key (a tranche or a turn count)."""
    groups = collections.defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    return {str(k): {"accuracy": accuracy(chosen[idx], rejected[idx]), "pairs": len(idx)}
            for k, idx in sorted(groups.items(), key=lambda kv: str(kv[0]))}


def normalised(chosen, rejected, reference_mean: float):
    """Scores minus the held-out mean (Bai et al. §3.3: 'mean-normalised on a held-out set')."""
    return chosen - reference_mean, rejected - reference_mean


def above_threshold_accuracy(chosen_n, rejected_n, thresholds=THRESHOLDS) -> dict:
    """Accuracy on pairs whose two normalised scores both exceed t (Bai et al. §3.3, Fig 25)."""
    out = {}
    for t in thresholds:
        keep = (chosen_n > t) & (rejected_n > t)
        out[f"{t:g}"] = {"accuracy": accuracy(chosen_n[keep], rejected_n[keep]), "pairs": int(keep.sum())}
    return out


def _field(source, key, default):
    return [as_text(source[i].get(key, default)) if key in ("tranche", "family")
            else int(source[i].get(key, default)) for i in range(len(source))]


def _optional_groups(source, c, r) -> dict:
    """Accuracy per task family and on the labelers' conflicting pairs, where rows say (the
    embedded world's do: hh.data.synthetic)."""
    out = {}
    if len(source) and "family" in source[0]:
        out["per_family"] = grouped_accuracy(c, r, _field(source, "family", ""))
    if len(source) and "conflict" in source[0]:
        conflict = np.array(_field(source, "conflict", 0), bool)
        out["conflict"] = ({"accuracy": accuracy(c[conflict], r[conflict]), "pairs": int(conflict.sum())}
                           if conflict.any() else None)
    return out


def evaluate_pm(workdir, test_specs=None, out_dir=None, n_bins: int = 10, pm=None) -> dict:
    """Scores the workdir's PM on each test spec (default: its config's eval_sources); writes
    `<out_dir>/pm_eval.json` and a reliability PNG per spec and for all pairs together."""
    pm = pm or LoadedPM(workdir)
    specs = list(test_specs or pm.config.data.eval_sources)
    out_dir = epath.Path(out_dir or pm.workdir / "pm_eval")
    out_dir.mkdir(parents=True, exist_ok=True)
    report, all_c, all_r = {"workdir": str(pm.workdir), "step": int(pm.step), "sets": {}}, [], []
    for spec in specs:
        source = spec_source(spec, "test", pm.config.data)
        c, r = pm.scores(source)
        all_c.append(c)
        all_r.append(r)
        bins = calibration_bins(c, r, n_bins)
        name = spec.replace("/", "_").replace(":", "_")
        reliability_diagram(bins, out_dir / f"reliability_{name}.png", title=spec)
        report["sets"][spec] = {
            "accuracy": accuracy(c, r), "pairs": int(len(c)),
            "per_tranche": grouped_accuracy(c, r, _field(source, "tranche", "unknown")),
            "per_turn": grouped_accuracy(c, r, _field(source, "num_turns", 0)),
            **_optional_groups(source, c, r),
            "calibration": bins}
    c, r = np.concatenate(all_c), np.concatenate(all_r)
    mean = float(np.mean(np.concatenate([c, r])))
    cn, rn = normalised(c, r, mean)
    bins = calibration_bins(c, r, n_bins)
    reliability_diagram(bins, out_dir / "reliability.png", title="all test pairs")
    report["all"] = {"accuracy": accuracy(c, r), "pairs": int(len(c)), "calibration": bins,
                     "score_mean": mean, "score_std": float(np.std(np.concatenate([c, r]))),
                     "normalised_above_threshold": above_threshold_accuracy(cn, rn)}
    atomic_write_text(out_dir / "pm_eval.json", json.dumps(report, indent=2))
    return report


def cross_matrix(workdirs, test_specs, out_dir) -> dict:
    """Accuracy of each PM (rows, by its data.helpful_fraction) on each test set (columns), and on
    each set's conflicting pairs; one PNG and JSON (Bai et al. 2022 §5.1: one-distribution PMs fall
    below chance on the other)."""
    rows = []
    for wd in workdirs:
        pm = LoadedPM(wd)
        accs, conflicts = [], []
        for spec in test_specs:
            source = spec_source(spec, "test", pm.config.data)
            c, r = pm.scores(source)
            accs.append(accuracy(c, r))
            conflicts.append((_optional_groups(source, c, r).get("conflict") or {}).get("accuracy"))
        rows.append((float(pm.config.data.get("helpful_fraction", float("nan"))), str(wd), accs, conflicts))
    rows.sort(key=lambda row: row[0])
    out_dir = epath.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"test_sets": list(test_specs), "helpful_fraction": [r[0] for r in rows],
              "workdirs": [r[1] for r in rows], "accuracy": [r[2] for r in rows],
              # on each test set's pairs where the two labelers disagree (None: no such pairs)
              "conflict_accuracy": [r[3] for r in rows]}
    atomic_write_text(out_dir / "cross_matrix.json", json.dumps(result, indent=2))
    _plot_matrix(result, out_dir / "cross_matrix.png")
    return result


def tranche_of(spec: str) -> str:
    """A test set's column name: the labeler that judges it ("helpful"), else its source's name."""
    return spec_labeler(spec) or parse_spec(spec, "test")[0]


def conflict_accuracy(matrix, fraction: float, tranche: str):
    """The accuracy of the tension step's PM of `fraction` helpful data on the conflicting pairs
    of the test set judged by `tranche`'s labeler ("helpful" / "harmless"), or None."""
    rows = dict(zip(matrix["helpful_fraction"], matrix["conflict_accuracy"]))
    values = [v for spec, v in zip(matrix["test_sets"], rows.get(fraction, []))
              if tranche_of(spec) == tranche and v is not None]
    return values[0] if values else None


def _plot_matrix(result, path):
    plt = pyplot()

    acc = np.array(result["accuracy"], float)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * acc.shape[1], 1.2 + 0.45 * acc.shape[0]))
    image = ax.imshow(acc, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
    for (i, j), v in np.ndenumerate(acc):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(acc.shape[1]), result["test_sets"], rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(acc.shape[0]), [f"{f:.1f}" for f in result["helpful_fraction"]])
    ax.set_ylabel("PM's helpful fraction")
    ax.set_title("PM accuracy by training mixture")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def define_flags():
    """Only when run as a tool (flags at import would clash with hh.main's --workdir)."""
    flags.DEFINE_multi_string("workdir", None, "PM workdir(s); several give the cross matrix")
    flags.DEFINE_list("test_sources", [], "test specs (default: each run's data.eval_sources)")
    flags.DEFINE_string("out", "", "output folder (default: <workdir>/pm_eval, and "
                        "<parent>/cross_matrix for several workdirs)")
    flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    f = flags.FLAGS
    if not f["verbosity"].present:
        logging.set_verbosity(logging.WARNING)   # orbax logs every restore at INFO
    workdirs, tests, out = f.workdir, list(f.test_sources), f.out
    for wd in workdirs:
        report = evaluate_pm(wd, tests or None, (out + "/" + epath.Path(wd).name) if out and len(workdirs) > 1
                             else out or None)
        print(json.dumps({"workdir": wd, "accuracy": report["all"]["accuracy"],
                          "ece": report["all"]["calibration"]["ece"],
                          "per_set": {k: v["accuracy"] for k, v in report["sets"].items()}}))
    if len(workdirs) > 1:
        tests = tests or list(LoadedPM(workdirs[0]).config.data.eval_sources)
        matrix_dir = out or str(epath.Path(workdirs[0]).parent / "cross_matrix")
        print(json.dumps(cross_matrix(workdirs, tests, matrix_dir)))


if __name__ == "__main__":
    define_flags()
    app.run(main)
