"""fastsep.allocator: glibc's thresholds raised at import, and FASTSEP_MALLOC=system leaves them alone."""
import os
import subprocess
import sys

import pytest

from fastsep import allocator


def _configured_in_fresh_process(**env):
    code = "import fastsep, fastsep.allocator as a; print(a.configured())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_import_configures_glibc_unless_told_not_to():
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").gnu_get_libc_version
    except (OSError, AttributeError):
        pytest.skip("not glibc: fastsep leaves other allocators alone")
    assert _configured_in_fresh_process() == "True"
    assert _configured_in_fresh_process(FASTSEP_MALLOC="system") == "False"
    assert allocator.configure() is True and allocator.configured()  # idempotent in this process
