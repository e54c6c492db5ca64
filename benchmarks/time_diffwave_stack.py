"""One call of ``fastsep.ops.diffwave_stack`` (the fused CPU residual stack, float32) on random weights, timed alone:
the kernel's rate in GFLOP/s against the float32 GEMM yardstick of ``fastsep bench``'s roofline, without the rest of
the vocoder around it. Quick enough to alternate two builds of the extension (``benchmarks/compare_builds.sh``).

    python benchmarks/time_diffwave_stack.py --threads 1 --batch 1 8 --length 32000 --repeats 7

Defaults are the bundled default's GM (32 channels, 12 layers, dilations 1..32 twice) on 4 s of 8 kHz audio,
conditioned. Prints the fastest of ``--repeats`` calls (the machine's noise only ever adds time) and the median.
``FASTSEP_DIFFWAVE_WAVE`` / ``FASTSEP_DIFFWAVE_TILE`` choose the driver (see ``csrc/cpu/diffwave_tiles.h``).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from fastsep import _ext, ops
from fastsep.threads import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--cycle", type=int, default=6, help="dilation cycle: 1, 2, ..., 2^(cycle-1), repeated")
    parser.add_argument("--length", type=int, default=32000, help="samples")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--unconditioned", action="store_true")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: the AVX512-BF16 kernel (AMX tiles or vdpbf16ps, fastsep._ext."
                             "diffwave_bf16_variant()), with the conditioner computed in the kernel from a mel of "
                             "--mels channels as the vocoder runs it")
    parser.add_argument("--mels", type=int, default=40, help="mel channels of the in-kernel conditioner (bfloat16)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's intra-op threads (default: fastsep's choice, FASTSEP_NUM_THREADS first)")
    args = parser.parse_args()
    set_threads(args.threads)  # as the CLI does: importing fastsep alone leaves torch's own default
    C, L, T = args.channels, args.layers, args.length
    dilations = [2 ** (i % args.cycle) for i in range(L)]
    print(f"threads {torch.get_num_threads()}, {C} channels x {L} layers, {T} samples, dilations {dilations}, "
          f"{args.precision}" + (f" ({_ext.diffwave_bf16_variant()})" if args.precision == "bfloat16" else ""))
    for B in args.batch:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(B, C, T, generator=g)
        dstep = torch.randn(L, B, C, generator=g)
        cond = None if args.unconditioned else torch.randn(L, B, 2 * C, T, generator=g)
        extra = {}
        if args.precision == "bfloat16":
            extra["precision"] = "bfloat16"
            if cond is not None:  # the conditioner's multiply-adds are not counted in the rate below
                cond = None
                extra.update(mel=torch.randn(B, args.mels, T, generator=g),
                             w_cond=0.1 * torch.randn(L, 2 * C, args.mels, generator=g))
        w_dil = 0.1 * torch.randn(L, 2 * C, C, 3, generator=g)
        b_dil = 0.1 * torch.randn(L, 2 * C, generator=g)
        w_out = 0.1 * torch.randn(L, 2 * C, C, generator=g)
        b_out = 0.1 * torch.randn(L, 2 * C, generator=g)
        flop = 2 * B * T * L * (2 * C * 3 * C + 2 * C * C)  # the two convolutions' multiply-adds
        with torch.no_grad():
            ops.diffwave_stack(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, **extra)  # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ops.diffwave_stack(x, dstep, cond, w_dil, b_dil, w_out, b_out, dilations, **extra)
                times.append(time.perf_counter() - t0)
        best, median = min(times), statistics.median(times)
        print(f"batch {B}: fastest {best * 1e3:.1f} ms ({flop / best / 1e9:.1f} GFLOP/s), "
              f"median {median * 1e3:.1f} ms ({flop / median / 1e9:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
