import os
import sys
import zlib

# The tests import the installed fusedrnn: an editable install (the checkout itself, through its
# import hook) or a wheel. The checkout's own fusedrnn/ must not shadow a wheel, as it does whenever
# the repository root is on sys.path (python -m pytest puts the current directory there): its
# sources have no compiled extension unless built in place.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_seed(request):
    # A different but reproducible seed per test: fresh random inputs in every test.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    yield


@pytest.fixture
def threads():
    """torch.set_num_threads for the test; the caller's thread count comes back afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)
