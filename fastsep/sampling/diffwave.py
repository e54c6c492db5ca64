"""DiffWave's reverse process, kept apart from the network (:class:`fastsep.models.DiffWave`).

:class:`DiffWaveSampler` owns everything that is about *running* a DiffWave rather than being one: the sampling
precision, which implementation runs the residual stack on CUDA (and the timed choice between them), CUDA-graph
capture, and the layer weights packed for :func:`fastsep.ops.diffwave_stack`. A model's own sampler is
``model.sampler()``; ``DiffWave.generate`` delegates to it.

The loop reproduces lmnt-com/diffwave's inference.py (full or fast schedule, fractional diffusion steps, per-step
clamp). Everything that does not depend on the diffusion step (mel upsampling, conditioner projections, the step
embeddings through every layer) is computed once per call.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _ext, ops

if TYPE_CHECKING:  # the model imports this module; the sampler only needs the type for hints
    from ..models.diffwave import DiffWave

__all__ = ["DiffWaveSampler", "PackedStack"]

CUDA_STACKS = ("auto", "kernel", "library")
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class PackedStack:
    """The residual layers' weights stacked as :func:`fastsep.ops.diffwave_stack` takes them ([L, ...], contiguous),
    plus the step projections. ``b_cond`` is the conditioner projections' bias (None when unconditional): constant
    over time, it joins the dilated convolution's bias instead of being added to L·B·2C·T values."""

    w_step: Tensor  # [L, C, 512]
    b_step: Tensor  # [L, C]
    w_dil: Tensor  # [L, 2C, C, 3]
    b_dil: Tensor  # [L, 2C]
    w_cond: Optional[Tensor]  # [L, 2C, n_mels]
    b_cond: Optional[Tensor]  # [L, 2C]
    w_out: Tensor  # [L, 2C, C]
    b_out: Tensor  # [L, 2C]


class DiffWaveSampler:
    """Draws audio from a :class:`~fastsep.models.DiffWave`.

    Args:
        model: the network. The sampler reads its parameters at each call (packed once per parameter version).
        precision: "float32", or "bfloat16" for the fused CPU stack's products (see :func:`fastsep.ops.diffwave_stack`).
        cuda_stack: CUDA only, what runs the residual stack: "kernel" (fastsep's fused CUDA kernel, float32 CUDA
            cores), "library" (cuDNN/cuBLAS, tensor cores where torch allows TF32) or "auto" (time both once per
            shape, graph setting and TF32 setting, and keep the faster).
        cond_memory_limit: bound in bytes on the precomputed conditioner projections (L·B·2C·T floats) of one
            chunk of the batch; larger batches are sampled in chunks of items.
    """

    def __init__(self, model: "DiffWave", precision: str = "float32", cuda_stack: str = "auto",
                 cond_memory_limit: int = 1 << 30):
        self.model = model
        self.precision = precision
        self.cuda_stack = cuda_stack
        self.cond_memory_limit = int(cond_memory_limit)
        self._packed: Optional[Tuple[Tuple[Any, ...], PackedStack]] = None
        # "auto" decisions, per (device, shapes, layers, cuda_graph, TF32 settings).
        self._stack_choice: Dict[Tuple[Any, ...], str] = {}
        self._capture_warned = False

    def settings(self) -> Dict[str, Any]:
        """The user's choices (the constructor's arguments), without the caches: what a copy of the model keeps."""
        return {"precision": self.precision, "cuda_stack": self.cuda_stack, "cond_memory_limit": self.cond_memory_limit}

    # ---------------------------------------------------------------------------------------------------- entry
    @torch.no_grad()
    def generate(
        self,
        mel: Union[Tensor, Sequence[Tensor], None] = None,
        fast: bool = True,
        seed: Optional[int] = None,
        lengths: Optional[Sequence[int]] = None,
        *,
        num_samples: Optional[int] = None,
        batch_size: int = 1,
        fused: bool = True,
        cuda_graph: bool = True,
        progress: bool = False,
        precision: Optional[str] = None,
    ) -> Tensor:
        """Sample audio ``[B, T]``; the arguments are those of :meth:`fastsep.models.DiffWave.generate`
        (``precision=None`` takes this sampler's ``precision``)."""
        model = self.model
        precision = self.precision if precision is None else precision
        if precision not in PRECISIONS:
            raise ValueError(f"DiffWave.generate: precision must be 'float32' or 'bfloat16', got {precision!r}")
        if self.cuda_stack not in CUDA_STACKS:
            raise ValueError(f"DiffWave sampler: cuda_stack must be 'auto', 'kernel' or 'library', "
                             f"got {self.cuda_stack!r}")
        param = model.input_projection.weight
        mel, frames = self._prepare_mel(mel, lengths, num_samples, batch_size, param)
        batch = mel.shape[0] if mel is not None else batch_size
        length = mel.shape[-1] * model.hop_length if mel is not None else num_samples
        item_seeds = item_seeds_for(seed, batch)
        use_fused = fused and param.dtype == torch.float32
        sched = model.schedule(fast)

        per_item = len(model.residual_layers) * 2 * model.config["residual_channels"] * length * param.element_size()
        chunk = batch if (mel is None or not use_fused) else max(1, min(batch, self.cond_memory_limit // max(per_item, 1)))
        outputs = []
        for start in range(0, batch, chunk):
            stop = min(batch, start + chunk)
            part = None if mel is None else mel[start:stop]
            noise = ItemNoise(item_seeds[start:stop], length, param.device, param.dtype)
            if use_fused:
                denoise = self._fused_denoiser(part, stop - start, length, sched["steps"], cuda_graph, precision)
            else:
                denoise = self._module_denoiser(part, sched["steps"])
            try:
                outputs.append(reverse_process(denoise, noise, sched, progress))
            finally:
                release(denoise)
        audio = torch.cat(outputs, dim=0)
        if frames is not None:
            valid = torch.arange(length, device=audio.device).unsqueeze(0) < (
                torch.tensor(frames, device=audio.device).unsqueeze(1) * model.hop_length)
            audio = audio * valid
        return audio

    # ---------------------------------------------------------------------------------------------- the network
    def _module_denoiser(self, mel: Optional[Tensor], steps: List[float]):
        model = self.model

        def denoise(audio: Tensor, n: int) -> Tensor:
            step = torch.tensor([steps[n]], dtype=torch.float32, device=audio.device)
            return model(audio, step, mel).squeeze(1)

        return denoise

    def packed(self) -> PackedStack:
        """The layer weights stacked for the fused op, rebuilt only when a parameter changed (moved, replaced, or
        written in place: each parameter's storage and version counter are part of the key)."""
        model = self.model
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters())
        if self._packed is not None and self._packed[0] == key:
            return self._packed[1]
        layers = model.residual_layers
        cond = [layer.conditioner_projection for layer in layers]
        packed = PackedStack(
            w_step=torch.stack([layer.diffusion_projection.weight for layer in layers]),
            b_step=torch.stack([layer.diffusion_projection.bias for layer in layers]),
            w_dil=torch.stack([layer.dilated_conv.weight for layer in layers]).contiguous(),
            b_dil=torch.stack([layer.dilated_conv.bias for layer in layers]).contiguous(),
            w_cond=None if cond[0] is None else torch.stack([c.weight.squeeze(-1) for c in cond]),
            b_cond=None if cond[0] is None else torch.stack([c.bias for c in cond]),
            w_out=torch.stack([layer.output_projection.weight.squeeze(-1) for layer in layers]).contiguous(),
            b_out=torch.stack([layer.output_projection.bias for layer in layers]).contiguous(),
        )
        self._packed = (key, packed)
        return packed

    def _fused_denoiser(self, mel: Optional[Tensor], batch: int, length: int, steps: List[float], cuda_graph: bool,
                        precision: str):
        """Precompute everything that is constant across sampling steps, and return eps(audio, n) that runs the
        residual stack as one fused op."""
        model = self.model
        pk = self.packed()
        channels = model.config["residual_channels"]
        device = pk.w_dil.device
        # Step embeddings of every sampling step through every layer's projection: [N, L, B, C].
        embedded = model.diffusion_embedding(torch.tensor(steps, dtype=torch.float32, device=device))  # [N, 512]
        dsteps = torch.einsum("lcd,nd->nlc", pk.w_step, embedded) + pk.b_step
        dsteps = dsteps.unsqueeze(2).expand(-1, -1, batch, -1).contiguous()
        b_dil, cond = pk.b_dil, None
        stack = functools.partial(ops.diffwave_stack, precision=precision)
        in_kernel = (precision == "bfloat16" and device.type == "cpu" and channels % 32 == 0
                     and _ext.diffwave_bf16_variant() == "amx")
        if mel is not None and in_kernel:
            # The AMX kernel computes the conditioner block by block from the upsampled mel (a 40-channel product
            # beside the layer's own): no [L, B, 2C, T] buffer to write once and stream at every step.
            upsampled = model.spectrogram_upsampler(mel).contiguous()
            stack = functools.partial(stack, mel=upsampled, w_cond=pk.w_cond)
            b_dil = (b_dil + pk.b_cond).contiguous()
        elif mel is not None:
            upsampled = model.spectrogram_upsampler(mel)  # [B, n_mels, T]
            # [L, B, 2C, T], written in place layer by layer (an einsum returns a permuted view for B > 1 that the op
            # would copy on every step).
            if precision == "bfloat16" and device.type == "cpu" and _ext.diffwave_bf16_available():
                # The bfloat16 stack takes its conditioner in bfloat16: its projection is one more product of the
                # stack's (computed once, on the bfloat16 GEMM), and every step streams half the bytes.
                w_cond, upsampled = pk.w_cond.to(torch.bfloat16), upsampled.to(torch.bfloat16)
            else:
                w_cond = pk.w_cond
            cond = upsampled.new_empty(pk.w_cond.shape[0], batch, 2 * channels, length)
            for i in range(pk.w_cond.shape[0]):
                torch.matmul(w_cond[i], upsampled, out=cond[i])
            b_dil = (b_dil + pk.b_cond).contiguous()
        dilations = model.dilations
        head = model._head

        def network_with(stack: Callable[..., Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
            def network(audio: Tensor, dstep: Tensor) -> Tensor:
                x = F.relu(model.input_projection(audio.unsqueeze(1)))
                skip_sum = stack(x, dstep, cond, pk.w_dil, b_dil, pk.w_out, pk.b_out, dilations)
                return head(skip_sum).squeeze(1)

            return network

        if device.type != "cuda":
            return cpu_network(model, stack, cond, pk, b_dil, dilations, dsteps)
        if precision != "float32":
            warnings.warn("DiffWave.generate: precision='bfloat16' applies to the CPU kernel; on CUDA the stack runs "
                          "in float32 (TF32 where torch allows it)", stacklevel=4)
        runner = self._cuda_runner(network_with, (batch, length), dsteps[0], cuda_graph)

        def denoise(audio: Tensor, n: int) -> Tensor:
            return runner(audio, dsteps[n])

        denoise.close = lambda: release(runner)  # generate frees the graph as soon as this chunk is sampled
        return denoise

    # --------------------------------------------------------------------------------------------------- CUDA
    def stack_choice_key(self, device, audio_shape, dstep_shape, cuda_graph: bool) -> Tuple[Any, ...]:
        """What an "auto" choice depends on: a choice timed with graphs says nothing about eager runs (launch
        overhead is what graphs remove), nor one timed with TF32 about runs without it."""
        return (str(device), tuple(audio_shape), tuple(dstep_shape), len(self.model.residual_layers), bool(cuda_graph),
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)

    def _cuda_runner(self, network_with, audio_shape, dstep_example: Tensor, cuda_graph: bool):
        """The step network on CUDA with the stack implementation ``cuda_stack`` asks for, captured as a CUDA graph
        when ``cuda_graph``. "auto" captures both, times a few replays of each once per key and keeps the faster:
        fastsep's fused kernel runs on float32 CUDA cores, the library path on tensor cores where torch allows TF32,
        and which wins depends on the GPU, the batch and the length."""
        from .. import reference

        stacks = {"kernel": ops.diffwave_stack, "library": reference.diffwave_stack}
        device = dstep_example.device
        key = self.stack_choice_key(device, audio_shape, dstep_example.shape[-2:], cuda_graph)
        wanted = self.cuda_stack if self.cuda_stack != "auto" else self._stack_choice.get(key)
        names = [wanted] if wanted else list(stacks)
        runners = {}
        for name in names:
            network = network_with(stacks[name])
            graphed = self._capture(network, audio_shape, dstep_example, device) if cuda_graph else None
            runners[name] = graphed or network
        if len(runners) == 1:
            return runners[names[0]]
        probe = torch.zeros(audio_shape, device=device, dtype=dstep_example.dtype)
        best = fastest(runners, lambda fn: cuda_seconds(fn, probe, dstep_example))
        self._stack_choice[key] = best
        for name, runner in runners.items():
            if name != best:
                release(runner)
        return runners[best]

    def _capture(self, network, audio_shape, dstep_example: Tensor, device):
        """``capture_cuda_graph``, warning once per sampler when a capture fails and the eager path serves."""
        try:
            return capture_cuda_graph(network, audio_shape, dstep_example, device)
        except GraphCaptureError as exc:
            if not self._capture_warned:
                self._capture_warned = True
                warnings.warn(f"DiffWave sampler: CUDA graph capture failed, sampling eagerly instead: {exc.__cause__!r}",
                              RuntimeWarning, stacklevel=5)
            return None

    # ------------------------------------------------------------------------------------------------- inputs
    def _prepare_mel(self, mel, lengths, num_samples, batch_size, param) -> Tuple[Optional[Tensor], Optional[List[int]]]:
        model = self.model
        if model.unconditional:
            if mel is not None:
                raise ValueError("DiffWave.generate: this model is unconditional; pass mel=None and num_samples")
            _positive_int("num_samples", num_samples)
            _positive_int("batch_size", batch_size)
            return None, None
        if mel is None:
            raise ValueError(f"DiffWave.generate: this model needs a mel spectrogram [B, {model.n_mels}, frames]")
        if isinstance(mel, (list, tuple)):
            if not mel:
                raise ValueError("DiffWave.generate: got an empty list of mel spectrograms")
            for i, m in enumerate(mel):
                self._check_mel(m, f"mel[{i}]", dims=(2,))
            if lengths is not None:
                raise ValueError("DiffWave.generate: lengths comes from the list of mels; do not pass both")
            lengths = [m.shape[-1] for m in mel]
            longest = max(lengths)
            mel = torch.stack([F.pad(m, (0, longest - m.shape[-1])) for m in mel])
        else:
            self._check_mel(mel, "mel", dims=(2, 3))
            if mel.dim() == 2:
                mel = mel.unsqueeze(0)
        frames = mel.shape[-1]
        if lengths is not None:
            lengths = [int(n) for n in lengths]
            if len(lengths) != mel.shape[0] or not all(1 <= n <= frames for n in lengths):
                raise ValueError(
                    f"DiffWave.generate: lengths must hold {mel.shape[0]} frame counts in [1, {frames}], got {lengths}")
        return mel.to(device=param.device, dtype=param.dtype), lengths

    def _check_mel(self, mel, name: str, dims) -> None:
        n_mels = self.model.n_mels
        if not isinstance(mel, Tensor):
            raise TypeError(f"DiffWave.generate: {name} must be a torch.Tensor, got {type(mel).__name__}")
        if not mel.is_floating_point():
            raise TypeError(f"DiffWave.generate: {name} must be a float tensor (normalised log-mel in [0, 1]), "
                            f"got dtype {mel.dtype}")
        if mel.dim() not in dims:
            shapes = "[n_mels, F]" if dims == (2,) else "[n_mels, F] or [B, n_mels, F]"
            raise ValueError(f"DiffWave.generate: {name} must be {shapes}, got shape {tuple(mel.shape)}")
        if mel.shape[-2] != n_mels:
            raise ValueError(f"DiffWave.generate: {name} must have n_mels = {n_mels} bands (dim -2), "
                             f"got {mel.shape[-2]} in shape {tuple(mel.shape)}")
        if mel.shape[-1] == 0 or (mel.dim() == 3 and mel.shape[0] == 0):
            raise ValueError(f"DiffWave.generate: {name} is empty (shape {tuple(mel.shape)}); need >= 1 frame")


def cpu_network(model: "DiffWave", stack: Callable[..., Tensor], cond, pk: PackedStack, b_dil: Tensor,
                dilations: List[int], dsteps: Tensor) -> Callable[[Tensor, int], Tensor]:
    """eps(audio, n) around the fused stack on CPU, with the input projection and the head as broadcast
    multiply-adds and matrix products instead of the modules' 1x1 convolutions: ATen takes its slow (im2col) path for
    those shapes, and they and their ReLUs cost ~20 % of a step at 4 s. Same arithmetic as ``model._head``, the
    1/sqrt(L) folded into the skip projection's weights."""
    w_in = model.input_projection.weight.detach().reshape(-1, 1).float()  # [C, 1]
    b_in = model.input_projection.bias.detach().reshape(-1, 1).float()
    w_skip = model.skip_projection.weight.detach()[..., 0].float() / math.sqrt(len(dilations))  # [C, C]
    b_skip = model.skip_projection.bias.detach().reshape(-1, 1).float()
    w_o = model.output_projection.weight.detach()[..., 0].float()  # [1, C]
    b_o = model.output_projection.bias.detach().reshape(-1, 1).float()

    def denoise(audio: Tensor, n: int) -> Tensor:
        x = torch.addcmul(b_in, w_in, audio.unsqueeze(1)).relu_()  # [B, C, T]
        skip_sum = stack(x, dsteps[n], cond, pk.w_dil, b_dil, pk.w_out, pk.b_out, dilations)
        h = torch.matmul(w_skip, skip_sum).add_(b_skip).relu_()
        return torch.matmul(w_o, h).add_(b_o).squeeze(1)

    return denoise


# --------------------------------------------------------------------------------------------- the reverse process
def reverse_process(denoise: Callable[[Tensor, int], Tensor], noise: "ItemNoise", sched, progress: bool) -> Tensor:
    """The reference's reverse process: x <- (x − beta_n/sqrt(1 − g_n)·eps(x, n))/sqrt(alpha_n) + sigma_n·z,
    sigma_n = sqrt((1 − g_{n−1})/(1 − g_n)·beta_n), clamped to [-1, 1] after every step."""
    from tqdm import tqdm

    beta, alpha, alpha_cum = sched["beta"], sched["alpha"], sched["alpha_cum"]
    audio = noise.draw()
    steps = range(len(alpha) - 1, -1, -1)
    for n in tqdm(steps, desc="DiffWave", disable=not progress, leave=False):
        c1 = 1.0 / alpha[n] ** 0.5
        c2 = beta[n] / (1.0 - alpha_cum[n]) ** 0.5
        audio = c1 * (audio - c2 * denoise(audio, n))
        if n > 0:
            sigma = ((1.0 - alpha_cum[n - 1]) / (1.0 - alpha_cum[n]) * beta[n]) ** 0.5
            audio = audio + sigma * noise.draw()
        audio = torch.clamp(audio, -1.0, 1.0)
    return audio


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"DiffWave: {name} must be an int >= 1, got {value!r}")
    return int(value)


def item_seeds_for(seed: Optional[int], batch: int) -> List[int]:
    """One seed per batch item derived from (seed, item); None draws ``seed`` from torch's global generator."""
    if seed is None:
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"DiffWave.generate: seed must be an int or None, got {type(seed).__name__}")
    # SeedSequence mixes (seed, item) so that neighbouring seeds do not share item streams.
    return [int(np.random.SeedSequence([int(seed) % (1 << 63), i]).generate_state(1, np.uint64)[0] >> 1)
            for i in range(batch)]


class ItemNoise:
    """Gaussian noise ``[B, T]`` drawn from one generator per batch item (see DiffWave.generate's seed)."""

    def __init__(self, seeds: List[int], length: int, device: torch.device, dtype: torch.dtype):
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.length, self.device, self.dtype = length, device, dtype

    def draw(self) -> Tensor:
        return torch.stack([torch.randn(self.length, generator=g, device=self.device, dtype=self.dtype)
                            for g in self.generators])


def fastest(runners: Dict[str, Callable], seconds: Callable[[Callable], float]) -> str:
    """The name of the runner with the least ``seconds(runner)``; ties go to the first."""
    times = {name: seconds(fn) for name, fn in runners.items()}
    return min(times, key=lambda name: times[name])


def cuda_seconds(fn: Callable, *args, repeats: int = 3) -> float:
    """Best of ``repeats`` timed calls of ``fn(*args)`` on the current CUDA stream, after one warm-up call."""
    fn(*args)
    best = float("inf")
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args)
        stop.record()
        stop.synchronize()
        best = min(best, start.elapsed_time(stop) / 1e3)
    return best


class GraphCaptureError(RuntimeError):
    """A CUDA graph capture failed and was abandoned cleanly; ``__cause__`` holds the original exception."""


def capture_cuda_graph(network: Callable[[Tensor, Tensor], Tensor], audio_shape, dstep_example: Tensor, device,
                       graph_factory: Callable[[], Any] = None):
    """Capture ``network(audio, dstep)`` as a CUDA graph over static buffers and return ``replay(audio, dstep)``.

    Replays copy the inputs into the static buffers; the returned tensor is overwritten by the next replay, which is
    fine because the sampler consumes it at once. The warm-up runs outside the capture and is not guarded: an error
    there is the network's and propagates. An error during the capture ends (abandons) the capture before anything
    else touches the stream, so the stream does not stay in capture mode, the caller's current stream is restored,
    and GraphCaptureError is raised from the original error. ``graph_factory`` (tests) replaces
    ``torch.cuda.CUDAGraph``.
    """
    static_audio = torch.zeros(audio_shape, device=device, dtype=dstep_example.dtype)
    static_dstep = dstep_example.clone()
    caller = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device=device)
    side.wait_stream(caller)
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up outside capture (cuDNN/cuBLAS workspaces, lazy init)
            network(static_audio, static_dstep)
    caller.wait_stream(side)
    graph = (graph_factory or torch.cuda.CUDAGraph)()
    capture_stream = torch.cuda.Stream(device=device)
    capture_stream.wait_stream(caller)
    torch.cuda.synchronize(device)  # as torch.cuda.graph does: nothing of the warm-up is in flight during capture
    # torch.cuda.stream(...) restores the caller's current stream on the way out, exception or not.
    with torch.cuda.stream(capture_stream):
        graph.capture_begin()
        try:
            static_out = network(static_audio, static_dstep)
        except BaseException as exc:
            _abandon_capture(graph, device)
            if not isinstance(exc, Exception):  # KeyboardInterrupt and the like: cleaned up, not swallowed
                raise
            raise GraphCaptureError(str(exc)) from exc
        try:
            graph.capture_end()
        except Exception as exc:  # noqa: BLE001 - e.g. an op that is not capturable invalidated the capture
            _abandon_capture(graph, device, ended=True)
            raise GraphCaptureError(str(exc)) from exc
    caller.wait_stream(capture_stream)

    return GraphReplay(graph, static_audio, static_dstep, static_out)


class GraphReplay:
    """``replay(audio, dstep)`` of a captured step network, and ``close()``, which frees the graph and its private
    memory pool at once. Without it each sampling call's graph waited for Python's garbage collector, which GPU
    memory does not prompt: a benchmark of repeated calls on an H100 held 58 GiB in graph pools and then failed
    to capture for lack of memory."""

    def __init__(self, graph, static_audio: Tensor, static_dstep: Tensor, static_out: Tensor):
        self._graph, self._audio, self._dstep, self._out = graph, static_audio, static_dstep, static_out

    def __call__(self, audio: Tensor, dstep: Tensor) -> Tensor:
        if self._graph is None:
            raise RuntimeError("DiffWave sampler: this captured graph was closed")
        self._audio.copy_(audio)
        self._dstep.copy_(dstep)
        self._graph.replay()
        return self._out

    def close(self) -> None:
        if self._graph is not None:
            self._graph.reset()
        self._graph = self._audio = self._dstep = self._out = None


def release(runner) -> None:
    """Close ``runner`` when it holds a captured graph (a :class:`GraphReplay`, or a step function carrying one as
    its ``close``); eager runners hold nothing to free."""
    close = getattr(runner, "close", None)
    if close is not None:
        close()


def _abandon_capture(graph, device, ended: bool = False) -> None:
    """End a capture that failed, and drop whatever was recorded. Ending an invalidated capture reports an error of
    its own, which says nothing new (the original error is being raised), so it is not propagated."""
    if not ended:
        try:
            graph.capture_end()
        except Exception:  # noqa: BLE001 - cudaErrorStreamCaptureInvalidated and the like, expected here
            pass
    try:
        graph.reset()
    except Exception:  # noqa: BLE001 - nothing was instantiated
        pass
    _end_generator_capture(device)


def _end_generator_capture(device) -> None:
    """A capture_end that raised never ended the default CUDA generator's part of the capture, and every later random
    draw on the device then fails ("Offset increment outside graph capture encountered unexpectedly"), the eager
    fallback's noise included. An empty capture begins and ends it properly (seen on torch 2.11 on an H100: after
    it, torch.rand on the device works again)."""
    empty = torch.cuda.CUDAGraph()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "The CUDA Graph is empty"
        with torch.cuda.stream(torch.cuda.Stream(device=device)):
            empty.capture_begin()
            empty.capture_end()
    empty.reset()
