"""The comparison interface: `python -m hh.serve --config configs/serve.py:tiny --workdir DIR`.

Which models answer (Bai et al. 2022 §2.2: context-distilled LMs, rejection samplers and RLHF
snapshots, several at once for diversity): `deployments`, each "NAME=WORKDIR[@K][#STEP]" (best of
K by `reward_model`; an earlier checkpoint STEP). Relative WORKDIRs are read under `models_root`.
`pairing`: "same" (the first deployment twice), "given" (the two names in `pair`) or "random" (two
distinct deployments per turn). The store is `<workdir>/comparisons.sqlite`; `tag` labels the
comparisons of this deployment (the online loop tags each round's).

Limits against one heavy or hostile client (429 when passed; hh/serve/limits.py):
`max_sampling_per_labeler` messages of one labeler waiting for responses at once,
`conversations_per_hour` started by one labeler, and `auth_failures` failed tokens from one address
within `auth_failure_window_s` seconds before that address must wait. `fake_sampling_s` > 0 is for
load tests only: canned responses after that many seconds, no models loaded (hh.serve.models.FakePool).

Presets: "tiny" serves the main job's models (`make run` writes runs/pipeline-tiny); "smoke" is the
tests' (a root given with --config.models_root).
"""

import ml_collections

from configs import common

PRESETS = {
    "tiny": dict(models_root="runs/pipeline-tiny",
                 deployments=["distill=distill", "distill-bo4=distill@4", "ppo=ppo"],
                 reward_model="pm", max_new_tokens=32),
    "smoke": dict(models_root="", deployments=["lm=lm", "lm-bo2=lm@2"], reward_model="pm",
                  max_new_tokens=16),
}


def get_config(arg="tiny"):
    preset = arg or "tiny"
    if preset not in PRESETS:
        raise ValueError(f"configs/serve.py: preset {preset!r}, known: {sorted(PRESETS)}")
    p = PRESETS[preset]
    return common.with_tuples(ml_collections.ConfigDict(dict(
        preset=preset,
        models_root=p["models_root"],
        deployments=list(p["deployments"]),
        reward_model=p["reward_model"],     # for best-of-K deployments ("" if none)
        pairing="random",
        pair=[],
        max_new_tokens=p["max_new_tokens"],
        temperature=1.0,
        rows_per_call=2,                    # rows of each sampling call (a pair of the same model: 1 call)
        host="127.0.0.1",                   # localhost only unless told otherwise
        port=8000,
        tag="",
        max_message_chars=2000,
        seed=0,
        max_sampling_per_labeler=2,         # more in flight -> 429
        conversations_per_hour=120,         # per labeler, a sliding hour -> 429
        auth_failures=20,                   # failed tokens per client address ...
        auth_failure_window_s=60.0,         # ... in this window -> 429 with Retry-After
        fake_sampling_s=0.0,                # tests only: > 0 serves canned responses, no models
    )))
