"""Hand freed heap pages back to the kernel between episodes, so a long run's RSS stays flat.

glibc's allocator keeps freed memory at the top of its heaps and in per-thread arenas for reuse; an episode
reset (a simulator rebuilding its observation buffers, camera frames of ~49 kB that sit below the mmap
threshold) can leave a fragmented heap whose high-water mark ratchets up by a page group now and then.
``malloc_trim(0)`` returns every whole free page to the kernel. It costs about a millisecond, so the loop
calls it once per episode, never per step. On a libc without it (musl, macOS) :func:`trim` is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_TRIM = None  # resolved once: the libc function, or False where there is none


def _resolve():
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        name = ctypes.util.find_library("c")
        if name:
            try:
                fn = ctypes.CDLL(name).malloc_trim
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
                _TRIM = fn
            except (OSError, AttributeError):
                pass
    return _TRIM


def available() -> bool:
    """True where the C library has ``malloc_trim`` (glibc)."""
    return bool(_resolve())


def trim() -> bool:
    """``malloc_trim(0)``; True when the allocator released memory, False when none or unavailable."""
    fn = _resolve()
    return bool(fn(0)) if fn else False
