"""How close each stage of separation runs to what the machine can do: a roofline per stage.

Two yardsticks are measured in the same run as the stages, on the same threads:

* the attainable multiply-add rate: a large square GEMM (``torch.mm``) in float32, and in bfloat16 where the CPU
  has native bfloat16 products (AVX512-BF16 or AMX; elsewhere bfloat16 GEMMs are emulated and would understate the
  machine, so they are not measured); 2 FLOPs per multiply-add;
* the copy bandwidth: ``dst.copy_(src)`` of a buffer far larger than the caches (bytes read + bytes written).

Each stage of a Separate-And-Diffuse separation (backbone, mel, vocoder, STFTs, F, combine, iSTFT, chunk
overlap-add, file decode and encode) is then timed on its own, on inputs prepared beforehand, and reported as time,
share of the stages' total, and achieved rate as a fraction of the attainable figure:

* stages whose work is multiply-adds (backbone, vocoder, F) count FLOPs analytically from the models' shapes
  (:func:`model_flops`: only convolution, linear, recurrent and attention products, 2 per multiply-add; norms,
  activations and FFTs are not counted, so the fraction is a lower bound of how busy the units are) against the
  GEMM yardstick (the bfloat16 one for a vocoder or F computing in bfloat16 where that was measured);
* the others (mel, STFT, combine, iSTFT, overlap-add, decode, encode) count the bytes they must move at least
  (inputs read once, outputs written once) against the copy bandwidth *of a copy of the same number of bytes*,
  measured in the same run: a small stage whose data sits in cache is compared with a copy that also sits in cache,
  so the fraction says how far the stage is from merely moving its data (``fraction_of_large_copy`` also compares it
  with the large copy).

Yardsticks report their best repeat (what the machine attains), and the GEMM is measured again after each FLOP
stage, the best of all its measurements being the attainable rate; stages report their median repeat.
"""
from __future__ import annotations

import functools
import math
import os
import platform
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["measure", "time_call", "cpu_bf16_support", "gemm_rate", "copy_rate", "machine_ceilings",
           "conv_flops", "linear_flops", "rnn_flops", "layer_flops", "convtasnet_flops", "diffwave_flops",
           "combiner_flops", "model_flops", "roofline", "format_roofline", "STAGES"]

# The stages of full mode in the order they run, as named in the report.
STAGES = ("decode", "backbone", "mel", "vocoder", "stft", "F", "combine", "istft", "overlap-add", "encode")

# Each timed sample repeats a short call until it lasts at least this long: perf_counter's resolution and Python's
# call overhead would otherwise dominate sub-millisecond stages and copies.
_MIN_SAMPLE_S = 0.005


# ---------------------------------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], repeats: int = 3, device=torch.device("cpu"), stat: str = "median",
            min_sample_s: float = _MIN_SAMPLE_S) -> float:
    """Seconds per call of ``fn``: one warm-up call, then ``repeats`` samples, each of as many calls as make it last
    ``min_sample_s``; ``stat`` is "median" (stages) or "min" (yardsticks: the best the machine did)."""
    if stat not in ("median", "min"):
        raise ValueError(f"stat must be 'median' or 'min', got {stat!r}")
    device = torch.device(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - start
    inner = max(1, int(math.ceil(min_sample_s / max(first, 1e-9)))) if first < min_sample_s else 1
    samples = []
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - start) / inner)
    return min(samples) if stat == "min" else statistics.median(samples)


def time_call(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` single calls after one warm-up call (``fastsep bench``'s rows)."""
    return measure(fn, repeats, device, "median", min_sample_s=0.0)


# ------------------------------------------------------------------------------------------------------ yardsticks
@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo", "r", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16_support(flags: Optional[set] = None) -> Tuple[bool, str]:
    """Whether this CPU multiplies bfloat16 natively, and what says so (``/proc/cpuinfo`` flags: ``avx512_bf16``,
    ``amx_bf16`` on x86, ``bf16`` on Arm; torch's CPU capability where the flags cannot be read)."""
    flags = _cpu_flags() if flags is None else set(flags)
    for flag in ("amx_bf16", "avx512_bf16", "bf16"):
        if flag in flags:
            return True, f"cpu flag {flag}"
    if flags:
        return False, "no avx512_bf16 / amx_bf16 / bf16 cpu flag"
    capability = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")())
    return ("BF16" in capability.upper() or "AMX" in capability.upper()), f"torch cpu capability {capability}"


def gemm_rate(dtype: torch.dtype = torch.float32, n: int = 1536, device="cpu", repeats: int = 5) -> Dict:
    """FLOP/s of ``torch.mm`` on ``n x n`` matrices (2·n³ FLOPs), best of ``repeats``."""
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    seconds = measure(lambda: torch.mm(a, b, out=out), repeats, device, "min")
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "seconds": seconds, "flops": 2 * n ** 3,
            "flops_per_s": 2 * n ** 3 / seconds}


def copy_rate(nbytes: int, device="cpu", repeats: int = 5) -> Dict:
    """Bytes/s of ``dst.copy_(src)`` for a ``nbytes`` float32 buffer (bytes read + bytes written), best of
    ``repeats``."""
    device = torch.device(device)
    count = max(1, int(nbytes) // 4)
    src = torch.ones(count, device=device)
    dst = torch.empty_like(src)
    seconds = measure(lambda: dst.copy_(src), repeats, device, "min")
    return {"bytes": 4 * count, "seconds": seconds, "bytes_per_s": 2 * 4 * count / seconds}


def machine_ceilings(device="cpu", gemm_n: int = 1536, copy_bytes: int = 64 << 20, repeats: int = 5) -> Dict:
    """The yardsticks: float32 GEMM, bfloat16 GEMM where the hardware has it (else None and why), large copy."""
    device = torch.device(device)
    if device.type == "cpu":
        bf16, why = cpu_bf16_support()
    else:
        bf16, why = bool(torch.cuda.is_bf16_supported()), "torch.cuda.is_bf16_supported()"
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch_cpu_capability": str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()),
        "gemm_float32": gemm_rate(torch.float32, gemm_n, device, repeats),
        "gemm_bfloat16": gemm_rate(torch.bfloat16, gemm_n, device, repeats) if bf16 else None,
        "bfloat16_support": why,
        "copy": copy_rate(copy_bytes, device, repeats),
    }


# ---------------------------------------------------------------------------------------------------- FLOP counters
# All counts are 2 FLOPs per multiply-add of the layer's products; biases, activations and norms are not counted.
def conv_flops(module: nn.Module, in_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """FLOPs of one call of a Conv1d/2d/3d (each output element: in_channels/groups x kernel multiply-adds) or a
    ConvTranspose1d/2d/3d (each *input* element: out_channels/groups x kernel multiply-adds)."""
    kernel = math.prod(module.kernel_size)
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return 2 * math.prod(in_shape) * (module.out_channels // module.groups) * kernel
    return 2 * math.prod(out_shape) * (module.in_channels // module.groups) * kernel


def linear_flops(module: nn.Linear, in_shape: Sequence[int]) -> int:
    """FLOPs of ``nn.Linear`` on an input of ``in_shape`` (``[..., in_features]``)."""
    rows = math.prod(in_shape[:-1])
    return 2 * rows * module.in_features * module.out_features


def rnn_flops(module: nn.RNNBase, in_shape: Sequence[int]) -> int:
    """FLOPs of an LSTM/GRU/RNN over ``in_shape`` (batched input): per layer, direction and time step,
    ``gates·hidden x (input + hidden)`` multiply-adds (input and recurrent products)."""
    gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    steps = math.prod(in_shape[:-1])  # batch x time, whatever batch_first says
    dirs = 2 if module.bidirectional else 1
    total, width = 0, module.input_size
    hidden = module.hidden_size
    out = getattr(module, "proj_size", 0) or hidden
    for _ in range(module.num_layers):
        total += dirs * 2 * steps * gates * hidden * (width + out)
        if out != hidden:
            total += dirs * 2 * steps * hidden * out
        width = dirs * out
    return total


def _encoder_layer_flops(layer: nn.TransformerEncoderLayer, in_shape: Sequence[int]) -> int:
    """``nn.TransformerEncoderLayer``: Q/K/V and output projections, QKᵀ and AV, the feed-forward pair. Counted as
    one unit because in eval mode torch runs it through a fused fast path that calls none of its submodules."""
    d = layer.self_attn.embed_dim
    if layer.self_attn.batch_first:
        batch, seq = in_shape[0], in_shape[1]
    else:
        seq, batch = in_shape[0], in_shape[1]
    tokens = batch * seq
    ffn = layer.linear1.out_features
    projections = 2 * tokens * d * 3 * d + 2 * tokens * d * d
    attention = 2 * 2 * batch * seq * seq * d  # QK^T and AV over all heads
    return projections + attention + 2 * 2 * tokens * d * ffn


def layer_flops(model: nn.Module, *inputs, call: Optional[Callable[[], object]] = None) -> int:
    """FLOPs of one call of ``model(*inputs)`` (or of ``call()``), counted from the shapes each convolution, linear,
    recurrent and Transformer encoder layer sees (forward hooks; any model built of those modules). Work done
    outside such modules (functional matmuls, fastsep's fused ops) is not seen: models that do that have their own
    counter (see :func:`model_flops`)."""
    from .models.blocks import Decoder, Encoder
    from .models.diffwave import SpectrogramUpsampler

    total = [0]
    handles = []
    # Counted whole: the upsampler and the separators' decoder and encoder run their (transposed) convolutions as
    # matrix products (the modules hold the weights)
    units = (nn.TransformerEncoderLayer, SpectrogramUpsampler, Decoder, Encoder)

    def hook(module, args, output):
        x = args[0] if args else None
        if not isinstance(x, Tensor):
            return
        if isinstance(module, SpectrogramUpsampler):
            batch, mels, frames = x.shape
            for conv, stride in ((module.conv1, module.strides[0]), (module.conv2, module.strides[1])):
                total[0] += conv_flops(conv, (batch, 1, mels, frames), (batch, 1, mels, frames * stride))
                frames *= stride
        elif isinstance(module, Decoder):
            feats = x.reshape(-1, *x.shape[-2:])
            total[0] += conv_flops(module.conv, feats.shape, (feats.shape[0], 1, output.shape[-1]))
        elif isinstance(module, Encoder):
            wave = x.reshape(-1, 1, x.shape[-1])
            total[0] += conv_flops(module.conv, wave.shape, output.reshape(-1, *output.shape[-2:]).shape)
        elif isinstance(module, units):
            total[0] += _encoder_layer_flops(module, x.shape)
        elif isinstance(module, nn.modules.conv._ConvNd):
            total[0] += conv_flops(module, x.shape, output.shape)
        elif isinstance(module, nn.Linear):
            total[0] += linear_flops(module, x.shape)
        elif isinstance(module, nn.RNNBase):
            total[0] += rnn_flops(module, x.shape if x.dim() == 3 else (1, *x.shape))

    def register(module: nn.Module) -> None:
        if isinstance(module, (units, nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase)):
            handles.append(module.register_forward_hook(hook))
            if isinstance(module, units):
                return  # its submodules may or may not run (fast path): the unit is counted once, whole
        for child in module.children():
            register(child)

    register(model)
    # Conv-TasNet's fused inference (fastsep.ops.tcn_block_) does the same arithmetic as its modules but calls none
    # of them: the count runs the module path
    fused = [m for m in model.modules() if getattr(m, "fused_inference", False)]
    try:
        for m in fused:
            m.fused_inference = False
        with torch.no_grad():
            call() if call is not None else model(*inputs)
    finally:
        for m in fused:
            m.fused_inference = True
        for h in handles:
            h.remove()
    return total[0]


def convtasnet_flops(model: nn.Module, batch: int, length: int) -> int:
    """Conv-TasNet on ``batch`` mixtures of ``length`` samples, from its config: encoder, bottleneck, per block
    1x1 in, depthwise, residual (all but the last block) and skip 1x1s, mask head, and the decoder per source."""
    c = model.config
    n, ksz, stride = c["n_filters"], c["kernel_size"], c["stride"]
    frames = (model.padded_length(length) - ksz) // stride + 1
    bn, hid, skip, p = c["bn_chan"], c["hid_chan"], c["skip_chan"], c["conv_kernel_size"]
    blocks = c["n_blocks"] * c["n_repeats"]
    per_block = bn * hid + hid * p + hid * skip
    per_frame = n * ksz + n * bn  # encoder, bottleneck
    per_frame += skip * c["n_src"] * n + c["n_src"] * n * ksz  # mask head, decoder
    s = c.get("coarse_stride", 1)
    if s == 1:
        return 2 * batch * frames * (per_frame + blocks * per_block + (blocks - 1) * hid * bn)
    # fine blocks (all with a residual) on every frame; the coarse ones, the strided conv down (bn x bn x s per
    # coarse frame) and the transposed conv up (skip x skip x s) on ceil(frames / s) frames
    fine = c["fine_repeats"] * c["n_blocks"]
    coarse_frames = -(-frames // s)
    per_coarse = (blocks - fine) * per_block + (blocks - fine - 1) * hid * bn + bn * bn * s + skip * skip * s
    return 2 * batch * (frames * (per_frame + fine * (per_block + hid * bn)) + coarse_frames * per_coarse)


def diffwave_flops(model: nn.Module, items: int, length: int, steps: Optional[int] = None,
                   conditioner_per_step: bool = False) -> int:
    """DiffWave sampling ``items`` waveforms of ``length`` samples (a whole number of hops) in ``steps`` network
    passes (default: the fast schedule's), as the fused sampler runs it: the mel upsampler and the conditioner
    projections once per call, then per step the input projection, every residual layer's dilated (3-tap) and
    output 1x1 convolutions, the skip and output projections, and the step embedding's linear layers.
    ``conditioner_per_step=True`` counts the conditioner inside every step, as the plain module path does."""
    c = model.config
    ch, layers, mels, hop = c["residual_channels"], c["residual_layers"], c["n_mels"], c["hop_length"]
    steps = len(c["inference_noise_schedule"]) if steps is None else int(steps)
    per_sample_step = ch + layers * (2 * ch * ch * 3 + 2 * ch * ch) + ch * ch + ch
    embed = 128 * 512 + 512 * 512 + layers * 512 * ch  # per step, independent of the length
    total = 2 * items * length * per_sample_step * steps + 2 * embed * steps
    if not c.get("unconditional", False):
        frames = length // hop
        s1, s2 = model.spectrogram_upsampler.strides
        upsampler = mels * frames * 3 * 2 * s1 + mels * frames * s1 * 3 * 2 * s2
        conditioner = layers * 2 * ch * mels * length
        total += 2 * items * (upsampler + conditioner * (steps if conditioner_per_step else 1))
    return total


def combiner_flops(model: nn.Module, items: int, length: int) -> int:
    """F's two heads on ``items`` (batch x talkers) waveforms of ``length`` samples: every 3x3 convolution and 1x1
    skip projection over the ``(n_fft/2 + 1) x frames`` bins of the centred STFT."""
    cfg = model.stft_cfg
    bins = (cfg.n_fft // 2 + 1) * (max(length, cfg.n_fft // 2 + 1) // cfg.hop_length + 1)
    total = 0
    for head in (model.mag_head, model.phase_head):
        convs = [head.inp, *head.blocks, head.out] + [s for s in head.skips if isinstance(s, nn.Conv2d)]
        total += sum(conv.in_channels * conv.out_channels * math.prod(conv.kernel_size) for conv in convs)
    return 2 * items * bins * total


def model_flops(model: nn.Module, kind: str, items: int, length: int, **kwargs) -> Optional[int]:
    """FLOPs of ``model`` in its role ``kind`` ("backbone": ``items`` mixtures; "vocoder": ``items`` waveforms
    sampled; "combiner": ``items`` talker waveforms), each ``length`` samples. Conv-TasNet, DiffWave and the
    Combiner have closed forms; any other backbone or vocoder built of torch layers is counted with
    :func:`layer_flops` on a random input of that shape; None where neither applies."""
    from .models.combiner import Combiner
    from .models.convtasnet import ConvTasNet
    from .models.diffwave import DiffWave
    from .models.ensemble import BackboneEnsemble

    if isinstance(model, BackboneEnsemble):  # the members' own counts per view; alignment and mean not counted
        counts = [model_flops(m, kind, items, length + shift, **kwargs) for m in model.members
                  for shift in model.shifts]
        return None if any(c is None for c in counts) else sum(counts) * len(model.polarities)
    if isinstance(model, ConvTasNet):
        return convtasnet_flops(model, items, length)
    if isinstance(model, DiffWave):
        hop = model.hop_length
        return diffwave_flops(model, items, (length // hop + 1) * hop, **kwargs)  # vocode pads to whole frames
    if isinstance(model, Combiner):
        return combiner_flops(model, items, length)
    if not isinstance(model, nn.Module):
        return None
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if kind == "backbone":
        return layer_flops(model, torch.randn(items, length, device=device) * 0.1)
    if kind == "vocoder" and callable(getattr(model, "vocode", None)):
        x = torch.randn(items, length, device=device) * 0.1
        return layer_flops(model, call=lambda: model.vocode(x))
    return None


# ---------------------------------------------------------------------------------------------------------- stages
def _nbytes(*tensors: Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# Separator's chunking defaults when its signature cannot tell (wrapped or replaced __init__): 8 s chunks, 1 s overlap.
_FALLBACK_CHUNKING = (8.0, 1.0)


def _default_chunking() -> Tuple[float, float]:
    """The Separator's default chunk and overlap (seconds), read from its signature so the two do not drift."""
    import inspect

    from .separator import Separator

    try:
        params = inspect.signature(Separator.__init__).parameters
        chunk = float(params["chunk_seconds"].default)
        overlap = params["overlap_seconds"].default
    except (KeyError, TypeError, ValueError):
        return _FALLBACK_CHUNKING
    return chunk, (min(1.0, chunk / 4) if overlap is None else float(overlap))


def _stage(name: str, seconds: float, kind: str, work: Optional[int], ceiling: Optional[float],
           **extra) -> Dict:
    row = {"stage": name, "seconds": seconds, "kind": kind, "work": work, "rate": None, "ceiling": ceiling,
           "fraction": None}
    if work is not None and seconds > 0:
        row["rate"] = work / seconds
        if ceiling:
            row["fraction"] = row["rate"] / ceiling
    row.update(extra)
    return row


def roof_floor(rows: Sequence[Dict]) -> float:
    """Seconds the stages would take if each counted stage ran at its yardstick (its ``work / ceiling``: the GEMM rate
    for FLOP stages, a copy of the same bytes for byte stages) and the others as measured: the best these models
    can do on this machine without changing their arithmetic. Sets each row's ``floor_s``."""
    total = 0.0
    for r in rows:
        counted = r.get("work") is not None and r.get("ceiling")
        r["floor_s"] = min(r["seconds"], r["work"] / r["ceiling"]) if counted else r["seconds"]
        total += r["floor_s"]
    return total


@torch.no_grad()
def roofline(separator, seconds: float = 4.0, batch: int = 1, repeats: int = 3, ceilings: Optional[Dict] = None,
             seed: int = 0, overlap_add_seconds: float = 60.0, workdir: Optional[str] = None) -> Dict:
    """Time every stage of ``separator``'s full mode (those its parts have) on ``batch`` mixtures of ``seconds``
    and report each against the machine's yardsticks (see the module's notes). Returns a JSON-able dict:
    ``machine`` (the yardsticks), ``stages`` (rows: stage, seconds, share, kind "flops"/"bytes", work, rate,
    ceiling, fraction), ``total_s``, ``end_to_end_s`` (the mode itself in one call, where it can be timed), and the
    settings.

    The chunk overlap-add stage is measured on ``overlap_add_seconds`` of audio with the Separator's default chunks
    (a ``seconds``-long input would fit one chunk and pay none) and scaled to ``seconds``: its row is what a long
    recording pays per ``seconds`` of audio. Decode and encode read and write 16-bit WAVs at the model's rate in
    ``workdir`` (a temporary folder by default).
    """
    from . import ops
    from .audio import AudioReader, save
    from .batch_files import _Outputs
    from .chunking import separate_chunked
    from .dsp import istft, mel_spectrogram, stft

    dev = torch.device(getattr(separator, "device", "cpu"))
    rate = int(separator.sample_rate)
    n_src = int(separator.n_src)
    length = int(round(seconds * rate))
    if length < 2 or batch < 1:
        raise ValueError(f"roofline needs seconds * sample_rate >= 2 and batch >= 1, got {seconds}, {batch}")
    ceilings = machine_ceilings(dev) if ceilings is None else {k: (dict(v) if isinstance(v, dict) else v)
                                                                for k, v in ceilings.items()}
    large_copy = ceilings["copy"]["bytes_per_s"]
    # The GEMM yardsticks are measured again right after each FLOP stage and the best of all measurements is the
    # attainable rate: on a machine whose load varies (a shared CPU), a yardstick taken only at the start could be
    # taken in a busy moment and make a stage look faster than the machine.
    gemm_runs: Dict[str, List[float]] = {key: [ceilings[key]["flops_per_s"]] for key in
                                         ("gemm_float32", "gemm_bfloat16") if ceilings.get(key)}

    def remeasure_gemm() -> None:
        for key, runs in gemm_runs.items():
            dtype = torch.float32 if key == "gemm_float32" else torch.bfloat16
            runs.append(gemm_rate(dtype, ceilings[key]["n"], dev, max(2, repeats))["flops_per_s"])
    copies: Dict[int, List[float]] = {}

    def copy_ceiling(moved: int) -> None:
        # A copy of the same footprint (moved bytes = half read, half written), measured next to the stage and
        # again at the end of the run; the best of all is the attainable rate (see remeasure_gemm for why).
        copies.setdefault(moved, []).append(copy_rate(max(4, moved // 2), dev, max(3, repeats))["bytes_per_s"])

    def timed(fn):
        return measure(fn, repeats, dev, "median")

    rows: List[Dict] = []

    def bytes_stage(name: str, fn, moved: int, **extra) -> None:
        sec = timed(fn)
        copy_ceiling(moved)
        rows.append(_stage(name, sec, "bytes", moved, None, copy_bytes=moved,
                           fraction_of_large_copy=moved / sec / large_copy, **extra))

    gen = torch.Generator(device="cpu").manual_seed(seed)
    mix = (0.1 * torch.randn(batch, length, generator=gen)).to(dev)
    backbone = getattr(separator, "backbone", None)
    vocoder = getattr(separator, "vocoder", None)
    combiner = getattr(separator, "combiner", None)
    cpu_items = dev.type == "cpu" and batch > 1  # the Separator runs the vocoder and F one item per call on CPU

    folder_ctx = tempfile.TemporaryDirectory(prefix="fastsep-roofline-") if workdir is None else None
    folder = folder_ctx.name if folder_ctx is not None else workdir
    try:
        # ------------------------------------------------------------------------------------- decode (file -> wave)
        wav = os.path.join(folder, "mixture.wav")
        save(wav, mix[0].cpu(), rate)

        def decode():
            for _ in range(batch):
                with AudioReader(wav) as reader:
                    reader.read(0, reader.frames)

        bytes_stage("decode", decode, batch * (os.path.getsize(wav) + 4 * length))

        # -------------------------------------------------------------------------------------------- backbone
        if backbone is None:
            raise ValueError("roofline: this separator has no backbone to time")
        vd = backbone(mix)
        sec = timed(lambda: backbone(mix))
        flops = model_flops(backbone, "backbone", batch, length)
        rows.append(_stage("backbone", sec, "flops", flops, None, model=type(backbone).__name__))
        remeasure_gemm()
        est = vd

        if vocoder is not None and combiner is not None:
            # --------------------------------------------------------------------------------- mel and vocoder
            per_item = [vd[b] for b in range(batch)]
            from .models.diffwave import DiffWave

            is_diffwave = isinstance(vocoder, DiffWave)
            precision = getattr(separator, "vocoder_precision", "float32")
            if is_diffwave:
                mels = [mel_spectrogram(w.float(), rate, vocoder.hop_length, vocoder.n_mels) for w in per_item]
                bytes_stage("mel", lambda: [mel_spectrogram(w.float(), rate, vocoder.hop_length, vocoder.n_mels)
                                            for w in per_item], _nbytes(vd) + sum(_nbytes(m) for m in mels))

                def sample():
                    return [vocoder.generate(m, seed=seed + b, precision=precision) for b, m in enumerate(mels)]

                sec = timed(sample)
                steps = len(vocoder.config["inference_noise_schedule"])
            else:  # another vocoder: mel inside, one stage
                sec = timed(lambda: separator._vocode(vd, [seed] * batch))
                steps = None
            flops = model_flops(vocoder, "vocoder", batch * n_src, length)
            yardstick = "gemm_bfloat16" if precision == "bfloat16" and "gemm_bfloat16" in gemm_runs \
                else "gemm_float32"
            rows.append(_stage("vocoder", sec, "flops", flops, None, model=type(vocoder).__name__,
                               precision=precision, steps=steps, yardstick=yardstick))
            remeasure_gemm()
            vg = separator._vocode(vd, [seed] * batch)

            # --------------------------------------------------------------------------- STFT, F, combine, iSTFT
            cfg = combiner.stft_cfg
            spec_d, spec_g = stft(vd, cfg), stft(vg, cfg)
            bytes_stage("stft", lambda: (stft(vd, cfg), stft(vg, cfg)), _nbytes(vd, vg, spec_d, spec_g))
            f_precision = getattr(separator, "combiner_precision", "float32")
            coefficients = functools.partial(combiner.coefficients, precision=f_precision)
            if cpu_items:
                coeffs = [coefficients(spec_d[b:b + 1], spec_g[b:b + 1]) for b in range(batch)]
                d1 = torch.cat([c[0] for c in coeffs]).contiguous()
                d2 = torch.cat([c[1] for c in coeffs]).contiguous()
                run_f = lambda: [coefficients(spec_d[b:b + 1], spec_g[b:b + 1]) for b in range(batch)]
            else:
                d1, d2 = (t.contiguous() for t in coefficients(spec_d, spec_g))
                run_f = lambda: coefficients(spec_d, spec_g)
            sec = timed(run_f)
            yardstick = "gemm_bfloat16" if f_precision == "bfloat16" and "gemm_bfloat16" in gemm_runs \
                else "gemm_float32"
            rows.append(_stage("F", sec, "flops", model_flops(combiner, "combiner", batch * n_src, length), None,
                               model=type(combiner).__name__, precision=f_precision, yardstick=yardstick))
            remeasure_gemm()
            combined = ops.complex_combine(spec_d, spec_g, d1, d2)
            bytes_stage("combine", lambda: ops.complex_combine(spec_d, spec_g, d1, d2),
                        _nbytes(spec_d, spec_g, d1, d2, combined))
            est = istft(combined, length, cfg)
            bytes_stage("istft", lambda: istft(combined, length, cfg), _nbytes(combined, est))

        # --------------------------------------------------------------------------------- chunk overlap-add
        chunk_s, overlap_s = _default_chunking()
        chunk, overlap = int(round(chunk_s * rate)), int(round(overlap_s * rate))
        long_n = max(int(round(overlap_add_seconds * rate)), 2 * chunk)
        long_mix = torch.randn(batch, long_n, generator=gen).to(dev)
        # The "separator" repeats the chunk per talker (a view, no work): what is timed is the chunker's own
        # work, the talker matching, cross-fade and assembly of the output.
        fake = lambda piece: piece[:, None, :].expand(piece.shape[0], n_src, piece.shape[-1])
        n_chunks = max(1, math.ceil((long_n - overlap) / (chunk - overlap)))
        moved = 4 * batch * n_src * (2 * long_n + 3 * overlap * (n_chunks - 1))
        sec = timed(lambda: separate_chunked(fake, long_mix, chunk, overlap))
        scale = length / long_n
        copy_ceiling(moved)
        rows.append(_stage("overlap-add", sec * scale, "bytes", int(moved * scale), None, copy_bytes=moved,
                           fraction_of_large_copy=moved / sec / large_copy, measured_on_seconds=long_n / rate,
                           chunk_seconds=chunk_s, overlap_seconds=overlap_s))

        # -------------------------------------------------------------------------------- encode (wave -> files)
        targets = [os.path.join(folder, f"out_s{c + 1}.wav") for c in range(n_src)]
        est_cpu = est.float().cpu()

        def encode():
            for b in range(batch):
                sink = _Outputs(targets, rate, rate)
                sink.push(est_cpu[b])
                sink.finish()

        # float32 in, float32 temporary written and read back, 16-bit written (see batch_files._Outputs)
        bytes_stage("encode", encode, batch * n_src * length * (4 + 4 + 4 + 2))
    finally:
        if folder_ctx is not None:
            folder_ctx.cleanup()

    end_to_end = None
    run = getattr(separator, "_run", None)
    modes = tuple(getattr(separator, "modes", ("backbone", "xcorr", "full")))
    mode = "full" if (vocoder is not None and combiner is not None and "full" in modes) else "backbone"
    if callable(run):
        try:
            end_to_end = timed(lambda: run(mix, mode, [seed] * batch))
        except TypeError:  # a Separator whose private _run takes other arguments: the stages still stand
            end_to_end = None
    for key, runs in gemm_runs.items():
        ceilings[key]["flops_per_s"] = max(runs)
        ceilings[key]["runs_flops_per_s"] = runs
    peak32 = ceilings["gemm_float32"]["flops_per_s"]
    for moved in copies:
        copy_ceiling(moved)
    total = sum(r["seconds"] for r in rows)
    for r in rows:
        r["share"] = r["seconds"] / total if total > 0 else None
        if r["kind"] == "bytes":
            r["ceiling"] = max(copies[r.pop("copy_bytes")])
            r["fraction"] = r["rate"] / r["ceiling"] if r["rate"] is not None else None
        if r["kind"] == "flops":
            r.setdefault("yardstick", "gemm_float32")
            r["ceiling"] = ceilings[r["yardstick"]]["flops_per_s"]
            r["fraction"] = r["rate"] / r["ceiling"] if r["rate"] is not None else None
            if r["yardstick"] != "gemm_float32" and r["rate"] is not None:
                r["fraction_of_float32_gemm"] = r["rate"] / peak32
    order = {name: i for i, name in enumerate(STAGES)}
    rows.sort(key=lambda r: order.get(r["stage"], len(order)))
    floor = roof_floor(rows)
    return {"machine": ceilings, "seconds_audio": seconds, "batch": batch, "sample_rate": rate, "n_src": n_src,
            "mode": mode, "stages": rows, "total_s": total, "rtf": total / (seconds * batch),
            "floor_s": floor, "floor_rtf": floor / (seconds * batch),
            "end_to_end_s": end_to_end, "repeats": repeats,
            "notes": "flops: 2 per multiply-add of conv/linear/recurrent/attention products, vs the float32 GEMM "
                     "(bfloat16 for a vocoder or F computing in bfloat16 where measured); bytes: inputs read once + "
                     "outputs written once, vs a copy of the same bytes in this run; overlap-add measured on "
                     "measured_on_seconds and scaled to seconds_audio; end_to_end_s: the mode's models in one "
                     "call (no file I/O, no chunking)"}


def _si(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.2f} {unit}"


def format_roofline(report: Dict) -> str:
    """A text table of :func:`roofline`'s report: the yardsticks, then one line per stage."""
    m = report["machine"]
    g16 = m.get("gemm_bfloat16")
    lines = [
        f"roofline: {report['seconds_audio']:g} s x batch {report['batch']}, {m['threads']} threads, "
        f"{m['device']} ({m.get('torch_cpu_capability', '')})",
        f"  float32 GEMM {_si(m['gemm_float32']['flops_per_s'], 'FLOP/s')} (n={m['gemm_float32']['n']}), "
        f"bfloat16 GEMM {_si(g16['flops_per_s'], 'FLOP/s') if g16 else 'not measured: ' + m['bfloat16_support']}, "
        f"copy {_si(m['copy']['bytes_per_s'], 'B/s')} ({m['copy']['bytes'] >> 20} MiB)",
        f"{'stage':<13}{'time s':>10}{'share':>8}{'achieved':>16}{'of attainable':>15}",
        "-" * 62,
    ]
    for r in report["stages"]:
        unit = "FLOP/s" if r["kind"] == "flops" else "B/s"
        frac = "-" if r["fraction"] is None else f"{100 * r['fraction']:.1f} %"
        lines.append(f"{r['stage']:<13}{r['seconds']:>10.4f}{100 * (r['share'] or 0):>7.1f}%"
                     f"{_si(r['rate'], unit):>16}{frac:>15}")
    e2e = report.get("end_to_end_s")
    lines.append(f"{'total':<13}{report['total_s']:>10.4f}   RTF {report['rtf']:.3f}"
                 + (f"; mode {report['mode']} in one call {e2e:.4f} s" if e2e is not None else ""))
    if report.get("floor_s") is not None:
        lines.append(f"{'at the roof':<13}{report['floor_s']:>10.4f}   RTF {report['floor_rtf']:.3f} (every counted "
                     f"stage at its yardstick: the floor for these models on this machine)")
    return "\n".join(lines)
