import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """SAM tests run torch on one thread: faster on a shared 2-core box (no oversubscription), and stable."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
