"""The smallest TPU slice each model preset runs on, and a mesh that fits every stage there.

Per preset: the smallest v5p slice on which every stage's train step (LM, PM, PPO with its four
models) fits, as measured by the AOT fit check `python -m hh.tools.fit --config
configs/<stage>.py:<preset> --topology <topology>` at each stage config's paper batch and sequence
length and the paper presets' defaults (fused attention, PPO's chunked log-probs). That is the
PPO step's slice from 2.7B up (its rollout's KV cache) and one host below. The measurements, per
stage, are in docs/scale-out.md ("Fit check") and benchmarks/fit_table.json
(`python benchmarks/fit_summary.py`).
"""

DEFAULT_SLICES = {
    # CPU test presets: the smallest v5p slice (one host) is far more than enough.
    "smoke": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    "tiny": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    "13M": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    # 42M and 197M needed 2x2x2 and 2x2x4 for the LM step with dense attention; fused fits 2x2x1
    "42M": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    "197M": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    "810M": {"topology": "v5p:2x2x1", "mesh": {"data": 1, "fsdp": 4, "tensor": 1}},
    "2.7B": {"topology": "v5p:2x2x2", "mesh": {"data": 1, "fsdp": 8, "tensor": 1}},
    "13B": {"topology": "v5p:2x4x4", "mesh": {"data": 1, "fsdp": 32, "tensor": 1}},
    # PM's 32-pair batch bounds data × fsdp at 32, and 4x4x4 splits into axes of 4 or 16:
    # fsdp 16 × tensor 4. LM and PPO alone have more headroom at fsdp 64 (docs/scale-out.md).
    "52B": {"topology": "v5p:4x4x4", "mesh": {"data": 1, "fsdp": 16, "tensor": 4}},
}


def default_slice(preset: str) -> dict:
    """-> {"topology": "v5p:AxBxC", "mesh": {"data", "fsdp", "tensor"}} for a model preset."""
    if preset not in DEFAULT_SLICES:
        raise KeyError(f"no default slice for preset {preset!r}; known: {', '.join(DEFAULT_SLICES)}")
    entry = DEFAULT_SLICES[preset]
    return {"topology": entry["topology"], "mesh": dict(entry["mesh"])}
