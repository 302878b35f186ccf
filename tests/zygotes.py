"""A sandboxed zygote over a scratch work dir, for tests that talk to the sandbox directly."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reprokit import sandbox


@contextmanager
def scratch_zygote(cells: list[str], *, memory_mb: int = 2048, seed: int | None = 0
                   ) -> Iterator[sandbox.Zygote]:
    """A zygote executing ``cells`` in a fresh work dir (owned by its sandbox uid when root);
    closed, and the dir removed, on exit. The caller calls ``execute``."""
    base = Path(tempfile.mkdtemp())
    base.chmod(0o711)
    work = base / "work"
    work.mkdir()
    try:
        with sandbox.sandbox_uid() as uid:
            if uid is not None:
                os.chown(work, uid, uid)
            z = sandbox.Zygote(work, cells, uid=uid, seed=seed,
                               limits=sandbox.Limits(memory_mb=memory_mb))
            try:
                yield z
            finally:
                z.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
