"""Shared fixtures. Tests that need the development datasets skip when ../shared/data is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data beside the checkout; skips the test when it is absent (a user's clone)."""
    if not (SHARED_DATA / "csi88").is_dir():
        pytest.skip("../shared/data is absent (development datasets are not part of the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def csi88_dir(shared_data: Path) -> Path:
    return shared_data / "csi88"


@pytest.fixture(scope="session")
def stocknet_price_dir(shared_data: Path) -> Path:
    return shared_data / "stocknet88" / "price"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One torch thread for every test (module fixtures included): on a shared 2-core machine two
    contending threads make updates many times slower, and no result depends on it (the golden
    metrics are recorded on one thread; the same-seed tests compare runs made alike)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def monkeypatch_module():
    """`monkeypatch` for module-scoped fixtures."""
    with pytest.MonkeyPatch.context() as patch:
        yield patch
