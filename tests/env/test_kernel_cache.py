"""Cached numba kernels are dropped when any kernel source of the package changes (numba itself only watches a
kernel's own file, and a kernel compiles in the kernels it calls from other files)."""

from pathlib import Path

from nodes.kernel_cache import STAMP, drop_stale_kernels, kernel_sources_digest


def cached_kernels(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("__pycache__/*.nb[ic]"))


def write_cache(root: Path) -> None:
    for sub in (root / "a" / "__pycache__", root / "b" / "__pycache__"):
        sub.mkdir(parents=True, exist_ok=True)
        (sub / "mod.kernel-12.py311.nbi").write_bytes(b"index")
        (sub / "mod.kernel-12.py311.1.nbc").write_bytes(b"code")


def test_the_cache_is_dropped_exactly_when_a_kernel_source_changes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    caller = tmp_path / "a" / "caller.py"
    callee = tmp_path / "b" / "callee.py"
    plain = tmp_path / "b" / "plain.py"
    caller.write_text("import numba\n# calls callee's kernel\n")
    callee.write_text("import numba\nSCALE = 1.0\n")
    plain.write_text("VALUE = 1\n")
    write_cache(tmp_path)

    # no stamp yet: a cache of unknown sources goes
    assert drop_stale_kernels(tmp_path) and cached_kernels(tmp_path) == []
    assert (tmp_path / "__pycache__" / STAMP).read_text() == kernel_sources_digest(tmp_path)

    write_cache(tmp_path)  # nothing changed: the cache stays
    assert not drop_stale_kernels(tmp_path) and len(cached_kernels(tmp_path)) == 4
    plain.write_text("VALUE = 2\n")  # a file without kernels changed: it stays
    assert not drop_stale_kernels(tmp_path) and len(cached_kernels(tmp_path)) == 4
    callee.write_text("import numba\nSCALE = 2.0\n")  # another file's kernel changed: every kernel goes
    assert drop_stale_kernels(tmp_path) and cached_kernels(tmp_path) == []
