"""Atomic file writes: a reader, or a run resuming after a kill, sees the old file or the new one,
never half of one.

One scheme for every writer: the data goes to a temporary sibling `.{name}.tmp-{pid}-{random}` in
the target's own directory (the same filesystem, so the rename is atomic; the pid says which process
left it, the random part keeps two threads of one process apart), which is then renamed over the
target. If the write fails the temporary is removed and the old target is left as it was.

Object stores (gs://, s3://) have no atomic rename (a "rename" is a copy and a delete), so there
the data is written to the target directly. An object becomes visible only once its upload is
complete, so readers still never see half a file; but a multi-step body of `atomic_path` that fails
part-way can leave what it wrote so far.
"""

import contextlib
import os
import shutil
import uuid
from typing import Iterator

from etils import epath


def is_local(path) -> bool:
    """True for a path on a local (POSIX) filesystem, False for a URL such as gs://bucket/x."""
    return "://" not in os.fspath(path)


def temporary_sibling(path) -> epath.Path:
    """The temporary name that `atomic_path` writes before renaming onto `path`."""
    path = epath.Path(path)
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def atomic_path(path) -> Iterator[epath.Path]:
    """Yields a temporary path beside `path` for the body to write (a file, or a directory it
    creates); on success it is renamed onto `path`, on an exception it is removed and `path` is
    untouched. A directory target must not exist yet (a rename does not replace a full directory).
    On an object store the body writes `path` itself (see the module docstring)."""
    path = epath.Path(path)
    if not is_local(path):
        yield path
        return
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(os.fspath(tmp), os.fspath(path))
    except BaseException:
        _remove(os.fspath(tmp))
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` atomically, synced to disk before the rename (so that a power cut
    cannot leave the new name pointing at an empty file)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(data)
        if is_local(tmp):
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically; see `atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))
