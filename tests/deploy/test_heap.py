"""deploy.runtime.heap: malloc_trim between episodes, a no-op where the C library lacks it."""

import platform

import pytest

from deploy.runtime import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's (needs a glibc Linux)")
def test_trim_releases_the_free_pages_inside_a_fragmented_heap():
    assert heap.available()
    blocks = [bytearray(50_000) for _ in range(400)]  # below the mmap threshold: on the heap
    del blocks[::2]  # holes of ~50 kB each, whole free pages inside the heap that free() keeps
    assert heap.trim() is True
    assert len(blocks) == 200 and all(len(b) == 50_000 for b in blocks)


def test_trim_is_a_no_op_without_malloc_trim(monkeypatch):
    monkeypatch.setattr(heap, "_TRIM", False)
    assert heap.available() is False and heap.trim() is False
