"""What the kill-and-resume tests wait for: the checkpoints orbax has finished writing."""


def finished_checkpoints(workdir) -> list[int]:
    """Steps whose checkpoint folder holds orbax's commit marker (a killed save leaves none)."""
    ckpt = workdir / "checkpoints"
    if not ckpt.exists():
        return []
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit() and (p / "commit_success.txt").exists())
