"""A check of the built extension's link, used by setup.py after the build (no torch import here).

A toolchain whose g++ links its C++ runtime statically (seen on a GPU image whose CXX was a separately built GCC in
/opt/gcc) gives ``fastsep/_C.so`` a private copy of libstdc++ beside the one the Python process already loaded. Its
iostreams then use a locale the private copy never initialised, and the first error message that formats a number
(every shape check's message does) segfaults instead of raising. The build refuses such a library.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import List, Optional


def needed_libraries(path: str) -> Optional[List[str]]:
    """The shared libraries ``path`` names as NEEDED (``readelf -d``); None when readelf is not available."""
    readelf = shutil.which("readelf")
    if readelf is None:
        return None
    out = subprocess.run([readelf, "-d", path], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]


def static_cxx_runtime_problem(path: str, compiler: str = "") -> Optional[str]:
    """A message explaining the fix when ``path`` does not link libstdc++ dynamically, else None (also when it cannot
    be told: no readelf)."""
    needed = needed_libraries(path)
    if needed is None or any(name.startswith("libstdc++") for name in needed):
        return None
    return (f"fastsep: {path} does not link the C++ runtime (libstdc++) dynamically; its linker "
            f"{compiler or '(the C++ compiler)'} embedded a private copy, and the extension would crash on its first "
            "error message. Build with the compiler that matches the system's libstdc++, e.g. "
            "`CC=gcc CXX=g++ pip install --no-build-isolation -e .`.")
