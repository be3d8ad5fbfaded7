"""One torch thread: these tests run many tiny ops, for which a second intra-op thread only adds
spin-waiting on a loaded (CI or shared) 2-core machine."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
