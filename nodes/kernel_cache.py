"""numba's on-disk cache of this package's kernels, kept in step with their sources.

`@numba.njit(cache=True)` keeps a compiled kernel in `__pycache__` and reuses it while the kernel's own file is
unchanged. A kernel that calls kernels of other files (the shield's fast path calls the barrier rows, the
gatekeeper's rollout and the env's step) has their code compiled into it, and numba does not notice when
those files change: the cache would go on running the old code. `check_package_kernels` runs when a package
with kernels is first imported (`nodes.env`, `nodes.shield`), before any kernel loads: when the kernel sources
under `nodes/` differ from those of the last check, it deletes every cached kernel, and numba compiles afresh.

With `NUMBA_CACHE_DIR` set, numba keeps its cache elsewhere and this check does not reach it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
STAMP = "numba-sources.sha256"  # in the root's own __pycache__
_checked = False


def kernel_sources_digest(root: Path) -> str:
    """sha256 over the paths and contents of the .py files under root that use numba."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        data = path.read_bytes()
        if b"numba" in data:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def drop_stale_kernels(root: Path) -> bool:
    """Delete root's cached kernels (`__pycache__/*.nbi`, `*.nbc` at any depth) if its kernel sources changed
    since the last check; True if it did. A read-only tree is left as it is."""
    digest = kernel_sources_digest(root)
    stamp = root / "__pycache__" / STAMP
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:  # no stamp yet: the cache may predate this check
        pass
    try:
        for pattern in ("__pycache__/*.nbi", "__pycache__/*.nbc"):
            for cached in root.rglob(pattern):
                cached.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        tmp = stamp.with_name(f"{STAMP}.{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, stamp)  # concurrent first imports each write a whole stamp
    except OSError:
        return False
    return True


def check_package_kernels() -> None:
    """`drop_stale_kernels` for `nodes/`, once per process (both `nodes.env` and `nodes.shield` ask)."""
    global _checked
    if not _checked:
        _checked = True
        drop_stale_kernels(PACKAGE)
