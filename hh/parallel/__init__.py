"""Device meshes and the mapping from logical axis names to mesh axes (data, fsdp, tensor)."""
