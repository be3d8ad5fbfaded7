"""One torch thread for every test: the suite runs many tiny ops, for which a second intra-op thread only
adds spin-waiting on a loaded (CI or shared) 2-core machine (up to 200x slower per op seen here)."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
