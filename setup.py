"""Builds fastsep's operator library ``fastsep._C`` against the installed torch.

    pip install --no-build-isolation -e .          # CPU kernels; CUDA kernels too when torch has CUDA

The CUDA kernels are built when the installed torch was built with CUDA (never decided by whether a GPU is
visible). ``FASTSEP_CUDA=0`` or ``1`` overrides. Without a visible GPU the CUDA architectures default to sm_80 and
sm_90 (``TORCH_CUDA_ARCH_LIST`` overrides). ``FASTSEP_NO_BUILD=1`` installs the pure-Python package only.
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda(torch) -> bool:
    flag = os.environ.get("FASTSEP_CUDA")
    if flag is not None:
        return flag.strip() not in ("0", "", "false", "False")
    return bool(torch.backends.cuda.is_built() and torch.version.cuda)


def _extensions():
    if os.environ.get("FASTSEP_NO_BUILD") == "1":
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError as exc:  # build isolation hides the installed torch
        raise SystemExit(
            "fastsep: building the extension needs torch installed first (pip install torch==<version>), and "
            "`pip install --no-build-isolation` so that the build sees it; set FASTSEP_NO_BUILD=1 to skip it."
        ) from exc

    def rel(pattern):
        return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))

    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    # -fno-math-errno and -fno-trapping-math let GCC if-convert and vectorise sqrt and the selects of the branch-free
    # math (nothing here reads errno or unmasks FP traps); value-changing flags like -ffast-math stay off.
    # -fopenmp: ATen's at::parallel_for is an OpenMP region compiled into the caller; without it the kernels run on
    # one thread (the torch wheels here are built with OpenMP).
    cxx = ["-O3", "-std=c++20", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
    link = ["-fopenmp"]
    include = [os.path.join(ROOT, "csrc")]
    if _want_cuda(torch):
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
        ext = CUDAExtension(
            "fastsep._C",
            sources + rel("csrc/cuda/*.cu") + rel("csrc/cuda/*.cpp"),
            include_dirs=include,
            define_macros=[("FASTSEP_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx + ["-DFASTSEP_WITH_CUDA=1"], "nvcc": ["-O3", "-lineinfo"]},
            extra_link_args=link,
        )
    else:
        ext = CppExtension("fastsep._C", sources, include_dirs=include, extra_compile_args=cxx, extra_link_args=link)
    class CheckedBuild(BuildExtension):
        def build_extension(self, extension):
            super().build_extension(extension)
            # fastsep/native_check.py, loaded by path: the package itself cannot be imported before it is built.
            import importlib.util

            spec = importlib.util.spec_from_file_location("_fastsep_native_check",
                                                          os.path.join(ROOT, "fastsep", "native_check.py"))
            check = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(check)
            compiler = " ".join(getattr(self.compiler, "linker_so", None) or [])[:80]
            problem = check.static_cxx_runtime_problem(self.get_ext_fullpath(extension.name), compiler)
            if problem:
                raise SystemExit(problem)

    return [ext], {"build_ext": CheckedBuild.with_options(no_python_abi_suffix=True)}


ext_modules, cmdclass = _extensions()

setup(
    name="fastsep",
    version="0.1.0",
    packages=find_packages(include=["fastsep", "fastsep.*"]),
    package_data={"fastsep": ["assets/*", "assets/**/*", "data/sentences.txt"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
