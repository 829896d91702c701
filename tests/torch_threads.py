"""One torch intra-op thread for tests of small models: several times faster than two on a loaded
2-core machine, and results then do not depend on the core count."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
