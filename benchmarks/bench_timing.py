"""One helper shared by the benchmark files (kept out of conftest.py so that ``tests/conftest.py`` cannot shadow it)."""
from typing import Optional


def timing(benchmark, stat: str = "min") -> Optional[float]:
    """``benchmark``'s ``stat`` in seconds, or None under ``--benchmark-disable``: each case then runs once, untimed,
    which is how the test suite smoke-runs these files."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else getattr(stats.stats, stat)
