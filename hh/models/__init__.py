"""The transformer family (13M–52B), its attention kernels, scalar heads and presets."""
