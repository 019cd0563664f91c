"""The smallest TPU slice each model preset runs on, and the mesh that fit there.

For every preset: the smallest v5p slice on which its PPO step (rollout, scoring and update with
four models resident, the largest of the pipeline's steps) fits, as measured by the AOT fit check
`python -m hh.tools.fit --config configs/ppo.py:<preset> --topology <topology> --mesh <mesh>`
with each stage config's paper batch and sequence length. The measurements, and the LM and PM
steps' own smallest slices, are in docs/scale-out.md ("Fit check") and benchmarks/fit_table.json.
"""

DEFAULT_SLICES = {
    # CPU test presets: the smallest v5p slice (one host) is more than enough.
    "smoke": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    "tiny": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    "13M": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    "42M": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    "197M": {"topology": "v5p:2x2x1", "mesh": {"data": 4, "fsdp": 1, "tensor": 1}},
    "810M": {"topology": "v5p:2x2x1", "mesh": {"data": 1, "fsdp": 4, "tensor": 1}},
    "2.7B": {"topology": "v5p:2x2x1", "mesh": {"data": 1, "fsdp": 4, "tensor": 1}},
    "13B": {"topology": "v5p:2x4x4", "mesh": {"data": 1, "fsdp": 32, "tensor": 1}},
    "52B": {"topology": "v5p:4x4x4", "mesh": {"data": 1, "fsdp": 64, "tensor": 1}},
}


def default_slice(preset: str) -> dict:
    """-> {"topology": "v5p:AxBxC", "mesh": {"data", "fsdp", "tensor"}} for a model preset."""
    if preset not in DEFAULT_SLICES:
        raise KeyError(f"no default slice for preset {preset!r}; known: {', '.join(DEFAULT_SLICES)}")
    entry = DEFAULT_SLICES[preset]
    return {"topology": entry["topology"], "mesh": dict(entry["mesh"])}
