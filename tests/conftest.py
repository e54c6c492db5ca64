import os
import warnings

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
warnings.filterwarnings("ignore", message="fastsep: the compiled extension was not found")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "kernel_vs_reference: compares a compiled fastsep kernel with its pure-PyTorch reference on the test's "
        "`device` parameter (cpu when it has none); skipped with a reason when that kernel is not the compiled one, "
        "failed instead under FASTSEP_REQUIRE_EXTENSION=1",
    )


def require_compiled_kernels(device="cpu", what="this test compares a fused kernel with its reference",
                             op=None) -> None:
    """Skip (or, under FASTSEP_REQUIRE_EXTENSION=1, fail) unless fastsep.ops runs the compiled kernels on ``device``
    (and, with ``op``, the built library has that op: one built from older sources lacks the newer ops).

    Without them fastsep.ops falls back to fastsep.reference, and a kernel-vs-reference test would compare the
    reference with itself and pass whatever the kernels do: such a test must never report a pass there."""
    from fastsep import ops

    if ops.uses_kernels(device, op):
        return
    missing = "no compiled kernels for it" if op is None else f"no compiled {op} for it"
    reason = (f"{what}, but fastsep.ops runs the references on {device} here ({missing}), so it "
              f"would compare the reference with itself")
    if os.environ.get("FASTSEP_REQUIRE_EXTENSION") == "1":
        pytest.fail(reason + " (FASTSEP_REQUIRE_EXTENSION=1)", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_setup(item):
    if item.get_closest_marker("kernel_vs_reference") is None:
        return
    params = getattr(item, "callspec", None)
    device = params.params.get("device", "cpu") if params is not None else "cpu"
    require_compiled_kernels(str(device))


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """Commands called in-process (``fastsep separate``, ``bench``) set torch's thread count as they should for a
    run; a test must not hand that setting to the tests after it (float results change with the thread count)."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny tensors (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    on a loaded shared machine, extra threads cost far more in synchronisation than they gain (10-50x slower steps
    were seen with two). Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
