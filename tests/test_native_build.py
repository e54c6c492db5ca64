"""The native sources build: every .cu with nvcc (sm_80, sm_90), the CUDA bindings' syntax, and the CMake library."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CUDA_SOURCES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
NVCC = shutil.which("nvcc")


def test_there_are_cuda_kernels():
    assert {p.name for p in CUDA_SOURCES} >= {"combine.cu", "xcorr_align.cu", "diffwave.cu"}


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("source", CUDA_SOURCES, ids=lambda p: p.name)
def test_cuda_kernel_compiles_with_nvcc(source, tmp_path):
    cmd = [NVCC, "-std=c++17", "-O2", "-I", str(ROOT / "csrc"), "-c", str(source), "-o", str(tmp_path / "k.o"),
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90", "-Werror",
           "all-warnings"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"nvcc failed on {source.name}:\n{done.stderr}"


def _cuda_include():
    roots = [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    if NVCC is not None:
        roots.append(str(Path(NVCC).resolve().parent.parent))
    for root in filter(None, roots):
        if (Path(root) / "include" / "cuda_runtime.h").exists():
            return Path(root) / "include"
    return None


@pytest.mark.skipif(_cuda_include() is None or shutil.which("g++") is None, reason="needs g++ and CUDA headers")
def test_cuda_bindings_syntax():
    # The bindings need a CUDA torch to link, but their syntax can be checked against the CPU torch's headers with
    # stand-ins for the CUDA library headers that a CPU torch lacks (tests/cuda_stubs).
    if torch.backends.cuda.is_built():
        pytest.skip("a CUDA torch builds the real bindings")
    tinc = Path(torch.__file__).parent / "include"
    cmd = ["g++", "-std=c++20", "-fsyntax-only", "-DFASTSEP_WITH_CUDA=1", f"-I{ROOT / 'csrc'}", f"-I{tinc}",
           f"-I{tinc / 'torch' / 'csrc' / 'api' / 'include'}", f"-I{_cuda_include()}",
           f"-I{ROOT / 'tests' / 'cuda_stubs'}", str(ROOT / "csrc" / "cuda" / "bindings.cpp")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]


def test_cmake_library_loads_and_computes():
    lib = os.environ.get("FASTSEP_CMAKE_LIBRARY")
    if not lib:
        pytest.skip("FASTSEP_CMAKE_LIBRARY is not set (CI builds the CMake library and sets it)")
    code = (
        "import torch, fastsep\n"
        "from fastsep import _ext, ops, reference\n"
        f"assert _ext.load() == {lib!r}, _ext.load()\n"
        "vd = torch.randn(2, 9, 4, dtype=torch.complex64); vg = torch.randn_like(vd)\n"
        "m = torch.rand(2, 2, 9, 4); p = torch.randn(2, 2, 9, 4)\n"
        "torch.testing.assert_close(ops.complex_combine(vd, vg, m, p), reference.complex_combine(vd, vg, m, p))\n"
        "print('ok')\n"
    )
    env = dict(os.environ, FASTSEP_LIBRARY=lib)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-4000:]


def test_cuda_registration_checker_catches_a_library_without_cuda_kernels(monkeypatch, capsys):
    # CI's CUDA build check (scripts/cuda_build_check.sh) trusts scripts/check_cuda_registrations.py to fail when an op
    # has no CUDA kernel. Fed the CPU-only library under a torch that claims CUDA, it must name every tensor op.
    from fastsep import _ext

    if not _ext.available() or _ext.has_cuda_kernels():
        pytest.skip("needs the CPU-only compiled library")
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_regs", ROOT / "scripts" / "check_cuda_registrations.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    assert {"complex_combine", "xcorr_align", "diffwave_stack", "cuda_limit"} <= set(check.schema_names())
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert check.main(_ext.load()) == 1
    err = capsys.readouterr().err
    for op in ("complex_combine", "complex_combine_backward", "combine_features", "xcorr_align", "diffwave_layer",
               "diffwave_stack"):
        assert f"fastsep::{op} has no CUDA kernel" in err
    assert "diffwave_stack_bf16 has no CUDA kernel" not in err  # declared CPU-only
    assert "built_with_cuda() is False" in err


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("readelf") is None, reason="needs g++ and readelf")
@pytest.mark.parametrize("static_runtime", [False, True])
def test_a_library_with_a_private_cxx_runtime_is_refused(tmp_path, static_runtime):
    # What setup.py runs after the build: a library that embeds libstdc++ (a toolchain linking it statically) would
    # segfault on its first error message that formats a number, so the build must refuse it with the fix named.
    from fastsep.native_check import static_cxx_runtime_problem

    src = tmp_path / "lib.cpp"
    src.write_text('#include <sstream>\nextern "C" int fmt(long n) { std::ostringstream s; s << n; '
                   'return (int)s.str().size(); }\n')
    lib = tmp_path / "lib.so"
    flags = ["-static-libstdc++"] if static_runtime else []
    subprocess.run(["g++", "-shared", "-fPIC", *flags, str(src), "-o", str(lib)], check=True, capture_output=True)
    problem = static_cxx_runtime_problem(str(lib), "g++")
    if static_runtime:
        assert problem is not None and "CXX=g++" in problem and str(lib) in problem
    else:
        assert problem is None
