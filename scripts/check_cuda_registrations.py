"""Checks that a built fastsep library registers a CUDA kernel for every fastsep op that takes tensors.

    python scripts/check_cuda_registrations.py path/to/_C.so

Runs without a GPU: it only loads the library into a CUDA build of torch and reads the dispatcher's table
(``torch._C._dispatch_dump``). The expected op names come from the schemas in csrc/fastsep.cpp, so an op added there
without a CUDA kernel (and not declared CPU-only below) fails this check. Exits non-zero with one line per problem.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# Ops that deliberately have no CUDA kernel, with the reason; fastsep.ops never sends CUDA tensors to them.
CPU_ONLY = {
    "diffwave_stack_bf16": "bfloat16 products with AVX512-BF16 (a CPU instruction set); CUDA samples in float32",
    "prelu_residual": "an elementwise fusion for CPU caches; on CUDA ATen's elementwise kernels serve F's heads",
    "tcn_block_": "a fusion of a Conv-TasNet block's passes for CPU caches; on CUDA the module's ATen kernels serve",
}


def _limit_names() -> tuple:
    # fastsep/_ext.py needs only torch: load that file alone (the package's other imports are not in the CUDA venv).
    spec = importlib.util.spec_from_file_location("fastsep_ext_standalone", ROOT / "fastsep" / "_ext.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CUDA_LIMIT_NAMES


def schema_names() -> list:
    """The op names defined in csrc/fastsep.cpp (m.def("name(...) -> ...")), the library's single schema file."""
    text = (ROOT / "csrc" / "fastsep.cpp").read_text()
    return sorted(set(re.findall(r'm\.def\(\s*"([a-z_0-9]+)\(', text)))


def registered_keys(qualname: str) -> set:
    """Dispatch keys with a kernel for ``qualname``, read from the dispatcher's dump ("CUDA: registered at ...")."""
    dump = torch._C._dispatch_dump(qualname)
    return {line.split(":", 1)[0].strip() for line in dump.splitlines() if ": registered at" in line}


def takes_tensors(qualname: str) -> bool:
    name = qualname.split("::", 1)[1]
    schema = getattr(torch.ops.fastsep, name).default._schema
    return any("Tensor" in str(arg.type) for arg in schema.arguments)


def main(lib: str) -> int:
    if not (torch.backends.cuda.is_built() and torch.version.cuda):
        print(f"check_cuda_registrations: torch {torch.__version__} is not a CUDA build", file=sys.stderr)
        return 1
    torch.ops.load_library(lib)
    problems = []
    expected = schema_names()
    loaded = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastsep::"))
    if not expected:
        problems.append("no m.def(...) schemas found in csrc/fastsep.cpp")
    for name in sorted(set(expected) - set(loaded)):
        problems.append(f"fastsep::{name} is defined in csrc/fastsep.cpp but not registered by {lib}")
    for name in sorted(set(CPU_ONLY) - set(expected)):
        problems.append(f"CPU_ONLY names fastsep::{name}, which csrc/fastsep.cpp does not define")
    if not torch.ops.fastsep.built_with_cuda():
        problems.append("fastsep::built_with_cuda() is False: the library was built without FASTSEP_WITH_CUDA")
    for name in loaded:
        qual = f"fastsep::{name}"
        keys = registered_keys(qual)
        if not takes_tensors(qual):
            # Device-independent queries (built_with_cuda, kernel limits...): one kernel serves every backend.
            status = "any device" if keys & {"CompositeImplicitAutograd[alias]", "CatchAll"} else "NO KERNEL"
            if status == "NO KERNEL":
                problems.append(f"{qual} takes no tensors and has no backend-independent kernel ({sorted(keys)})")
        elif name in CPU_ONLY:
            status = "CPU only (declared)"
            if "CUDA" in keys:
                problems.append(f"{qual} is declared CPU-only but now has a CUDA kernel: remove it from CPU_ONLY")
        elif "CUDA" in keys:
            status = "CUDA kernel"
        else:
            status = "MISSING CUDA KERNEL"
            problems.append(f"{qual} has no CUDA kernel (registered: {sorted(keys)})")
        print(f"  {qual:34s} {status}")
    limits = {}
    for name in _limit_names():
        try:
            limits[name] = int(torch.ops.fastsep.cuda_limit(name))
        except RuntimeError as exc:
            problems.append(f"fastsep::cuda_limit({name!r}) failed: {exc}")
    print(f"  CUDA kernel limits: {limits}")
    if problems:
        for p in problems:
            print(f"check_cuda_registrations: {p}", file=sys.stderr)
        return 1
    print(f"check_cuda_registrations: ok, {len(loaded)} ops, torch {torch.__version__} (CUDA {torch.version.cuda})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
