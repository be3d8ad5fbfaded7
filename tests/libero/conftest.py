"""Load triton (if installed: the dev extra) before any LIBERO env renders.

Mesa's llvmpipe (the EGL renderer of these tests) loads its own LLVM; importing triton, whose library
bundles another LLVM, after that segfaults the process (seen with triton 3.9.0, Mesa llvmpipe: an env
rendered, then ``import triton`` -> SIGSEGV; the other order works). torch's ONNX export imports triton
through torch._dynamo, so a module that renders and a later one that exports (test_libero_robot's graphs)
crashed ``pytest tests/libero`` when run on their own.
"""

import contextlib

with contextlib.suppress(ImportError):
    import triton  # noqa: F401
