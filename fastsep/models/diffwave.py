"""DiffWave (Kong et al., 2021): the mel vocoder GM of Separate-And-Diffuse, and an unconditional speech prior.

Module names and tensor shapes follow lmnt-com/diffwave (``diffwave`` package, model.py) so that its ``state_dict``
loads unchanged, and ``model(audio, diffusion_step, mel)`` returns what the reference returns for the same weights.
Two generalisations keep that compatibility: the mel upsampler takes any hop length (factored into the strides of its
two transposed convolutions; hop 256 gives the reference's 16 × 16), and the unconditional variant drops the
upsampler and the conditioner projections exactly as the reference does.

This file is the network, its noise schedules and checkpoint import. Sampling (:meth:`DiffWave.generate`, the
reference's inference.py) is done by :class:`fastsep.sampling.DiffWaveSampler`, which owns the sampling settings,
the fused stack's packed weights and the CUDA graphs; ``model.sampler()`` is the model's own. The plain module path
(``forward``) stays for training and as the oracle of the tests.
"""
from __future__ import annotations

import collections
import math
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .io import FolderPersistence

if TYPE_CHECKING:
    from ..sampling.diffwave import DiffWaveSampler

__all__ = [
    "DiffWave",
    "DiffusionEmbedding",
    "SpectrogramUpsampler",
    "ResidualBlock",
    "default_noise_schedule",
    "DEFAULT_INFERENCE_NOISE_SCHEDULE",
    "fractional_steps",
    "split_hop",
    "load_reference_checkpoint",
]

DEFAULT_INFERENCE_NOISE_SCHEDULE = [0.0001, 0.001, 0.01, 0.05, 0.2, 0.5]
EMBEDDING_DIM = 128  # sinusoidal step embedding (64 sines + 64 cosines) -> 512 -> 512, as the reference
STEP_HIDDEN = 512


def default_noise_schedule() -> List[float]:
    """The reference's training schedule: 50 betas linearly from 1e-4 to 0.05 (``np.linspace(...).tolist()``)."""
    return np.linspace(1e-4, 0.05, 50).tolist()


def split_hop(hop_length: int) -> Tuple[int, int]:
    """Factor the hop into the two upsampler strides ``(s1, s2)``, ``s1·s2 = hop``, as close to each other as the
    divisors allow (s1 the largest divisor <= sqrt(hop)); 256 -> (16, 16) as in the reference, 80 -> (8, 10)."""
    if isinstance(hop_length, bool) or not isinstance(hop_length, int) or hop_length < 1:
        raise ValueError(f"hop_length must be a positive int, got {hop_length!r}")
    s1 = max(d for d in range(1, math.isqrt(hop_length) + 1) if hop_length % d == 0)
    return s1, hop_length // s1


def fractional_steps(noise_schedule: Sequence[float], inference_noise_schedule: Sequence[float]) -> List[float]:
    """The training-time diffusion step (fractional) that each inference step stands for, as the reference computes.

    With ``a_t = prod_{i<=t} (1 − beta_i)`` over the training schedule and ``g_s`` the same over the inference
    schedule, step s maps to ``t + (sqrt(a_t) − sqrt(g_s)) / (sqrt(a_t) − sqrt(a_{t+1}))`` for the first t with
    ``a_{t+1} <= g_s <= a_t``; the result is rounded to float32 like the reference's ``np.float32`` array. For the
    training schedule itself this gives 0, 1, ..., N−1.

    Raises ValueError when some inference step lies outside the range the training schedule covers (the reference
    would silently return too few steps and crash later).
    """
    train_cum = np.cumprod(1.0 - np.asarray(noise_schedule, dtype=np.float64))
    infer_cum = np.cumprod(1.0 - np.asarray(inference_noise_schedule, dtype=np.float64))
    steps = []
    for s, g in enumerate(infer_cum):
        for t in range(len(train_cum) - 1):
            if train_cum[t + 1] <= g <= train_cum[t]:
                frac = (train_cum[t] ** 0.5 - g ** 0.5) / (train_cum[t] ** 0.5 - train_cum[t + 1] ** 0.5)
                steps.append(float(np.float32(t + frac)))
                break
        else:
            raise ValueError(
                f"inference step {s} (cumulative alpha {g:.6g}) is outside the training schedule's range "
                f"[{train_cum[-1]:.6g}, {train_cum[0]:.6g}]; choose an inference_noise_schedule the model was "
                f"trained to cover"
            )
    return steps


def _conv1d(in_ch: int, out_ch: int, kernel: int, **kwargs) -> nn.Conv1d:
    # The reference initialises every Conv1d with Kaiming-normal weights (biases keep torch's default).
    layer = nn.Conv1d(in_ch, out_ch, kernel, **kwargs)
    nn.init.kaiming_normal_(layer.weight)
    return layer


def _silu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


class DiffusionEmbedding(nn.Module):
    """Sinusoidal embedding of the diffusion step (128) through two SiLU-activated linear layers (-> 512).

    Integer steps index the table; float steps interpolate linearly between the two neighbouring rows (the fast
    schedule's fractional steps). The table is a non-persistent buffer, as in the reference, so it is not part of
    the state_dict.
    """

    def __init__(self, max_steps: int):
        super().__init__()
        self.register_buffer("embedding", self._table(max_steps), persistent=False)
        self.projection1 = nn.Linear(EMBEDDING_DIM, STEP_HIDDEN)
        self.projection2 = nn.Linear(STEP_HIDDEN, STEP_HIDDEN)

    @staticmethod
    def _table(max_steps: int) -> Tensor:
        # row t: sin(t·10^(4k/63)), cos(t·10^(4k/63)) for k = 0..63
        steps = torch.arange(max_steps).unsqueeze(1)
        freqs = 10.0 ** (torch.arange(64).unsqueeze(0) * 4.0 / 63.0)
        angles = steps * freqs
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    def lookup(self, diffusion_step: Tensor) -> Tensor:
        """The raw 128-d embedding of integer or fractional steps ``[N]`` -> ``[N, 128]``."""
        if diffusion_step.dtype in (torch.int32, torch.int64):
            return self.embedding[diffusion_step]
        low = torch.floor(diffusion_step).long()
        high = torch.ceil(diffusion_step).long()
        below, above = self.embedding[low], self.embedding[high]
        return below + (above - below) * (diffusion_step - low).unsqueeze(-1)

    def forward(self, diffusion_step: Tensor) -> Tensor:
        x = _silu(self.projection1(self.lookup(diffusion_step)))
        return _silu(self.projection2(x))


class SpectrogramUpsampler(nn.Module):
    """Upsample mel frames to samples with two transposed 2-D convolutions (time strides s1·s2 = hop), each followed
    by leaky ReLU(0.4). Kernel ``[3, 2s]``, padding ``[1, s // 2]`` gives exactly ``s`` outputs per input for even s
    (the reference's 16: kernel 32, padding 8); for odd s one extra trailing sample is cut."""

    def __init__(self, n_mels: int, hop_length: int = 256):
        super().__init__()
        self.strides = split_hop(hop_length)
        s1, s2 = self.strides
        self.conv1 = nn.ConvTranspose2d(1, 1, [3, 2 * s1], stride=[1, s1], padding=[1, s1 // 2])
        self.conv2 = nn.ConvTranspose2d(1, 1, [3, 2 * s2], stride=[1, s2], padding=[1, s2 // 2])
        self.reset_to_interpolation()

    @torch.no_grad()
    def reset_to_interpolation(self) -> None:
        """Start both layers as linear interpolation in time (a triangular kernel on the centre band row, whose
        overlapping taps sum to 1; zero bias), so the conditioner is the mel itself, interpolated, from step 0.

        Why: with PyTorch's default initialisation the two single-channel layers shrink the mel's variations by about
        three orders of magnitude (conditioner std ~1e-3 for a mel of std 0.2, both with leaky ReLU), and a DiffWave
        trained on this CPU for a thousand steps learned to ignore its conditioner altogether: its noise-prediction
        loss was the same with the true, a shuffled or an all-zero mel, and its re-synthesis did not follow the
        speech's loudness. The reference converges anyway after hundreds of thousands of GPU steps; fastsep's CPU
        budget cannot wait for that. Trained or loaded weights replace this initialisation as usual."""
        for conv, stride in ((self.conv1, self.strides[0]), (self.conv2, self.strides[1])):
            taps = torch.arange(2 * stride, dtype=torch.float32) + 0.5
            conv.weight.zero_()
            conv.weight[0, 0, 1] = 1.0 - (taps - stride).abs() / stride
            conv.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """``[B, n_mels, F]`` -> ``[B, n_mels, F·hop]``."""
        y = x
        for conv, stride in ((self.conv1, self.strides[0]), (self.conv2, self.strides[1])):
            y = F.leaky_relu(_transposed_conv_polyphase(y, conv.weight[0, 0], conv.bias[0], stride), 0.4)
        return y


def _transposed_conv_polyphase(x: Tensor, weight: Tensor, bias: Tensor, stride: int) -> Tensor:
    """What ``conv_transpose2d(x[:, None], weight[None, None], bias, stride=[1, s], padding=[1, s // 2])`` gives on
    its first ``F·s`` samples, for ``x [B, M, F]`` and a ``[3, 2s]`` kernel, as one small matrix product. Frame j
    contributes taps ``k < s`` to output block j and taps ``k >= s`` to block j + 1, each from mel rows m - 1, m,
    m + 1; so output block j is ``[x_i[j], x_i[j - 1]]`` (6 values per mel row) times a ``[6, s]`` matrix. ATen's
    single-channel transposed convolution took 6-7 ms for 2 x 4 s of mel at 8 kHz where this takes ~1 ms."""
    batch, mels, frames = x.shape
    padded = F.pad(x, (1, 1, 1, 1))  # mel rows -1..M, frames -1..F
    rows = [padded[:, 2 - i:2 - i + mels] for i in range(3)]  # tap row i reads mel row m + 1 - i
    taps = torch.stack([r[..., 1:] for r in rows] + [r[..., :-1] for r in rows], -1)  # [B, M, F + 1, 6]
    out = torch.matmul(taps, torch.cat([weight[:, :stride], weight[:, stride:]], 0)).reshape(batch, mels, -1)
    first = stride // 2
    return out[..., first:first + frames * stride] + bias


class ResidualBlock(nn.Module):
    """One residual layer: dilated conv of (x + step projection) + conditioner, gated tanh, 1x1 conv split into
    residual and skip. ``conditioner_projection`` is None in the unconditional model."""

    def __init__(self, n_mels: int, residual_channels: int, dilation: int, uncond: bool = False):
        super().__init__()
        self.dilation = dilation
        self.dilated_conv = _conv1d(residual_channels, 2 * residual_channels, 3, padding=dilation, dilation=dilation)
        self.diffusion_projection = nn.Linear(STEP_HIDDEN, residual_channels)
        self.conditioner_projection = None if uncond else _conv1d(n_mels, 2 * residual_channels, 1)
        self.output_projection = _conv1d(residual_channels, 2 * residual_channels, 1)

    def forward(self, x: Tensor, diffusion_step: Tensor, conditioner: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        y = self.dilated_conv(x + self.diffusion_projection(diffusion_step).unsqueeze(-1))
        if self.conditioner_projection is not None:
            y = y + self.conditioner_projection(conditioner)
        gate, filt = torch.chunk(y, 2, dim=1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = torch.chunk(y, 2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


# ----------------------------------------------------------------------------------------------- reference files
def load_reference_checkpoint(path: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """Read a checkpoint written by lmnt-com/diffwave (``{'model': state_dict, 'params': AttrDict or dict, ...}``)
    without executing pickled code.

    The file is loaded with ``torch.load(weights_only=True)``: only tensors, containers and numbers are rebuilt. The
    reference stores its params as ``diffwave.params.AttrDict`` (a dict subclass); that one class name, from any
    module, is allow-listed and rebuilt as a plain dict (its module is never imported). Any other global in the
    pickle (a callable, a foreign class) refuses the file with a ValueError naming it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no DiffWave checkpoint at {path}")
    try:
        wanted = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - not a torch zip file, truncated, ...
        raise ValueError(f"{path} is not a readable torch checkpoint: {exc}") from None
    attr_dicts = [name for name in wanted if name.rsplit(".", 1)[-1] == "AttrDict"]
    refused = [name for name in wanted if name not in attr_dicts]
    if refused:
        raise ValueError(
            f"refusing {path}: its pickle names {', '.join(refused)}, which could run code on loading; a DiffWave "
            f"checkpoint holds only tensors, numbers and its params (AttrDict)"
        )
    # OrderedDict is one of the few dict types the weights-only unpickler fills item by item and accepts a state
    # for; the AttrDict's state (its __dict__, i.e. itself) then lands harmlessly in the OrderedDict's __dict__.
    allow = [(collections.OrderedDict, name) for name in attr_dicts]
    try:
        with torch.serialization.safe_globals(allow):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the weights-only unpickler's refusals are UnpicklingError/RuntimeError
        raise ValueError(f"refusing {path}: it does not load as weights only ({exc})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise ValueError(f"{path} is not a DiffWave checkpoint: expected a dict with a 'model' state_dict")
    params = checkpoint.get("params")
    checkpoint["params"] = {} if params is None else dict(params)
    return checkpoint


def _checked_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"DiffWave: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _checked_schedule(name: str, value) -> List[float]:
    try:
        betas = [float(b) for b in value]
    except (TypeError, ValueError):
        raise ValueError(f"DiffWave: {name} must be a sequence of floats, got {value!r}") from None
    if not betas or not all(0.0 < b < 1.0 for b in betas):
        raise ValueError(f"DiffWave: {name} must be a non-empty sequence of betas in (0, 1), got {betas}")
    return betas


# ---------------------------------------------------------------------------------------------------- the model
class DiffWave(FolderPersistence, nn.Module):
    """DiffWave noise predictor with mel conditioning (or none, ``unconditional=True``).

    Args:
        residual_layers, residual_channels, dilation_cycle_length: the residual stack (layer i dilates by
            ``2 ** (i % dilation_cycle_length)``).
        n_mels: mel bands of the conditioner (ignored when unconditional).
        noise_schedule: training betas (default ``linspace(1e-4, 0.05, 50)``).
        inference_noise_schedule: betas of the fast sampler (default ``[1e-4, 1e-3, 0.01, 0.05, 0.2, 0.5]``).
        sample_rate, hop_length: of the mel features (:func:`fastsep.dsp.mel_spectrogram`); one mel frame stands for
            ``hop_length`` samples.
        unconditional: no mel input (a speech prior).

    ``forward(audio [B, T], diffusion_step [B] or [1], spectrogram [B, n_mels, T/hop]) -> [B, 1, T]`` is the
    reference's forward (the predicted noise).
    """

    def __init__(
        self,
        residual_layers: int = 30,
        residual_channels: int = 64,
        dilation_cycle_length: int = 10,
        n_mels: int = 80,
        noise_schedule: Optional[Sequence[float]] = None,
        inference_noise_schedule: Optional[Sequence[float]] = None,
        sample_rate: int = 22050,
        hop_length: int = 256,
        unconditional: bool = False,
    ):
        super().__init__()
        residual_layers = _checked_int("residual_layers", residual_layers)
        residual_channels = _checked_int("residual_channels", residual_channels)
        dilation_cycle_length = _checked_int("dilation_cycle_length", dilation_cycle_length)
        n_mels = _checked_int("n_mels", n_mels)
        sample_rate = _checked_int("sample_rate", sample_rate)
        hop_length = _checked_int("hop_length", hop_length)
        noise_schedule = _checked_schedule(
            "noise_schedule", default_noise_schedule() if noise_schedule is None else noise_schedule)
        inference_noise_schedule = _checked_schedule(
            "inference_noise_schedule",
            DEFAULT_INFERENCE_NOISE_SCHEDULE if inference_noise_schedule is None else inference_noise_schedule)
        if len(noise_schedule) < 2:
            raise ValueError("DiffWave: noise_schedule needs at least 2 steps")
        self.config = dict(
            residual_layers=residual_layers, residual_channels=residual_channels,
            dilation_cycle_length=dilation_cycle_length, n_mels=n_mels, noise_schedule=noise_schedule,
            inference_noise_schedule=inference_noise_schedule, sample_rate=sample_rate, hop_length=hop_length,
            unconditional=bool(unconditional),
        )
        # Checked now so that a bad fast schedule fails at construction, not mid-separation.
        self._fast_steps = fractional_steps(noise_schedule, inference_noise_schedule)
        self._full_steps = fractional_steps(noise_schedule, noise_schedule)

        self.input_projection = _conv1d(1, residual_channels, 1)
        self.diffusion_embedding = DiffusionEmbedding(len(noise_schedule))
        self.spectrogram_upsampler = None if unconditional else SpectrogramUpsampler(n_mels, hop_length)
        self.residual_layers = nn.ModuleList(
            ResidualBlock(n_mels, residual_channels, 2 ** (i % dilation_cycle_length), uncond=bool(unconditional))
            for i in range(residual_layers)
        )
        self.skip_projection = _conv1d(residual_channels, residual_channels, 1)
        self.output_projection = _conv1d(residual_channels, 1, 1)
        nn.init.zeros_(self.output_projection.weight)

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def unconditional(self) -> bool:
        return self.config["unconditional"]

    @property
    def n_mels(self) -> int:
        return self.config["n_mels"]

    @property
    def hop_length(self) -> int:
        return self.config["hop_length"]

    @property
    def sample_rate(self) -> int:
        return self.config["sample_rate"]

    @property
    def dilations(self) -> List[int]:
        return [layer.dilation for layer in self.residual_layers]

    # ---------------------------------------------------------------------------------------------- module path
    def forward(self, audio: Tensor, diffusion_step: Tensor, spectrogram: Optional[Tensor] = None) -> Tensor:
        """Predicted noise ``[B, 1, T]`` for noisy ``audio [B, T]`` at ``diffusion_step`` (int ``[B]``/``[1]``, or
        float for fractional steps), conditioned on ``spectrogram [B, n_mels, T / hop]`` (None if unconditional)."""
        self._check_forward(audio, diffusion_step, spectrogram)
        x = F.relu(self.input_projection(audio.unsqueeze(1)))
        step = self.diffusion_embedding(diffusion_step)
        cond = None if self.spectrogram_upsampler is None else self.spectrogram_upsampler(spectrogram)
        skip_sum = 0
        for layer in self.residual_layers:
            x, skip = layer(x, step, cond)
            skip_sum = skip_sum + skip
        return self._head(skip_sum)

    def _head(self, skip_sum: Tensor) -> Tensor:
        x = skip_sum / math.sqrt(len(self.residual_layers))
        return self.output_projection(F.relu(self.skip_projection(x)))

    def _check_forward(self, audio, diffusion_step, spectrogram) -> None:
        if not isinstance(audio, Tensor) or audio.dim() != 2 or not audio.is_floating_point():
            raise ValueError(f"DiffWave: audio must be a float tensor [B, T], got {_describe(audio)}")
        if not isinstance(diffusion_step, Tensor) or diffusion_step.dim() != 1:
            raise ValueError(f"DiffWave: diffusion_step must be a 1-d tensor [B] or [1], got {_describe(diffusion_step)}")
        if self.unconditional:
            if spectrogram is not None:
                raise ValueError("DiffWave: this model is unconditional; pass spectrogram=None")
            return
        if not isinstance(spectrogram, Tensor) or spectrogram.dim() != 3 or spectrogram.shape[1] != self.n_mels:
            raise ValueError(
                f"DiffWave: spectrogram must be [B, n_mels={self.n_mels}, frames], got {_describe(spectrogram)}")
        if audio.shape[-1] != spectrogram.shape[-1] * self.hop_length:
            raise ValueError(
                f"DiffWave: audio length must be frames·hop = {spectrogram.shape[-1]}·{self.hop_length} = "
                f"{spectrogram.shape[-1] * self.hop_length}, got {audio.shape[-1]}")

    # ------------------------------------------------------------------------------------------------ schedules
    def schedule(self, fast: bool = True) -> Dict[str, List[float]]:
        """The sampler's constants, as the reference's inference.py computes them (float64).

        Returns ``beta``, ``alpha = 1 − beta``, ``alpha_cum`` (cumulative product) of the fast or the training
        schedule, and ``steps``: the fractional training step fed to the network at each sampling step.
        """
        beta = np.asarray(self.config["inference_noise_schedule" if fast else "noise_schedule"], dtype=np.float64)
        alpha = 1.0 - beta
        return {"beta": beta.tolist(), "alpha": alpha.tolist(), "alpha_cum": np.cumprod(alpha).tolist(),
                "steps": list(self._fast_steps if fast else self._full_steps)}

    # ------------------------------------------------------------------------------------------------- sampling
    def sampler(self) -> "DiffWaveSampler":
        """This model's :class:`fastsep.sampling.DiffWaveSampler` (created on first use, kept with the model): it
        owns the sampling settings (``precision``, ``cuda_stack``, ``cond_memory_limit``), the packed weights and the
        CUDA stack choices. It is not part of the module's state: copies and pickles of the model get a new one."""
        sampler = self.__dict__.get("_sampler")
        if sampler is None:
            from ..sampling.diffwave import DiffWaveSampler

            sampler = DiffWaveSampler(self, **self.__dict__.pop("_sampler_settings", {}))
            self.__dict__["_sampler"] = sampler
        return sampler

    def __getstate__(self):
        # A sampler holds CUDA graphs and caches tied to this process and these tensors: never copied or pickled. Its
        # settings are the user's choices, not caches: they travel, and the copy's new sampler starts from them.
        state = super().__getstate__()
        sampler = state.pop("_sampler", None)
        if sampler is not None:
            state["_sampler_settings"] = sampler.settings()
        return state

    @property
    def sampling_precision(self) -> str:
        """Default ``precision`` of ``generate`` (and so of ``vocode``): "float32" or "bfloat16" (CPU kernel
        products). Stored on the model's sampler."""
        return self.sampler().precision

    @sampling_precision.setter
    def sampling_precision(self, value: str) -> None:
        self.sampler().precision = value

    @property
    def cuda_stack(self) -> str:
        """CUDA only: what runs the residual stack in ``generate`` ("kernel", "library" or "auto", see
        :class:`fastsep.sampling.DiffWaveSampler`). Stored on the model's sampler."""
        return self.sampler().cuda_stack

    @cuda_stack.setter
    def cuda_stack(self, value: str) -> None:
        self.sampler().cuda_stack = value

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
        """Sample audio ``[B, T]`` from mel spectrograms (the reference's ``predict``), with this model's sampler.

        Args:
            mel: ``[n_mels, F]``, ``[B, n_mels, F]`` or a list of ``[n_mels, F_i]`` (padded here with zeros, the
                features' silence floor). None for an unconditional model.
            fast: the 6-step inference schedule (True) or the full training schedule.
            seed: makes the result deterministic. Item i of the batch draws its noise from its own generator, seeded
                from (seed, i), so an item's audio does not depend on how the batch is chunked. None draws the seed
                from torch's global generator (so ``torch.manual_seed`` also fixes the result).
            lengths: valid frames of each item of a padded ``[B, n_mels, F]`` batch; item i's output is zeroed past
                ``lengths[i]·hop`` samples. Derived from a list input.
            num_samples, batch_size: output length and count for an unconditional model.
            fused: run the residual stack through :func:`fastsep.ops.diffwave_stack` (float32 parameters); False runs
                the plain modules (the reference's arithmetic, the tests' oracle).
            cuda_graph: on a CUDA device, replay the fused network as a captured CUDA graph.
            progress: show a progress bar over sampling steps.
            precision: "float32", or "bfloat16" for the fused CPU stack's products (~2x faster on CPUs with AMX and
                residual channels in multiples of 32, vdpbf16ps on other AVX512-BF16 CPUs, ~1.5x on AMD Zen 4, no faster on Intel; sums, gate and state stay
                float32; float32 with a warning where no such kernel runs).
                None: the model's ``sampling_precision``. The unfused path always computes in float32.

        Returns:
            ``[B, T]`` float audio in [-1, 1], ``T = hop · F`` (conditional) or ``num_samples``.
        """
        return self.sampler().generate(mel, fast, seed, lengths, num_samples=num_samples, batch_size=batch_size,
                                       fused=fused, cuda_graph=cuda_graph, progress=progress, precision=precision)

    @torch.no_grad()
    def vocode(self, audio: Tensor, fast: bool = True, seed: Optional[int] = None, **kwargs) -> Tensor:
        """Re-synthesise ``audio [B, T]`` (or ``[T]``) through its own mel spectrogram: the generative estimate GM of
        Separate-And-Diffuse. Uses the model's sample_rate / hop / n_mels; returns the same shape as the input."""
        from ..dsp import like_input, mel_spectrogram

        if self.unconditional:
            raise ValueError("DiffWave.vocode needs a mel-conditioned model; this one is unconditional")
        if not isinstance(audio, Tensor) or not audio.is_floating_point() or audio.dim() not in (1, 2):
            raise ValueError(f"DiffWave.vocode: audio must be a float tensor [B, T] or [T], got {_describe(audio)}")
        wave = audio.unsqueeze(0) if audio.dim() == 1 else audio
        mel = mel_spectrogram(wave.float(), self.sample_rate, self.hop_length, self.n_mels)
        return like_input(self.generate(mel, fast=fast, seed=seed, **kwargs), audio)

    # ------------------------------------------------- persistence (save/load: FolderPersistence; lmnt-com's files)
    @classmethod
    def from_reference_checkpoint(cls, path: Union[str, "os.PathLike[str]"], **overrides) -> "DiffWave":
        """Build a model from an lmnt-com/diffwave checkpoint (``weights.pt``: ``{'model', 'params', ...}``), read
        without unpickling code (see :func:`load_reference_checkpoint`). The reference's params name the
        architecture (``hop_samples`` becomes ``hop_length``); ``overrides`` replace any of this class's keyword
        arguments (e.g. an old checkpoint without ``unconditional``). Weights load strictly."""
        from .io import load_state_dict_checked

        checkpoint = load_reference_checkpoint(path)
        params = checkpoint["params"]
        names = ("residual_layers", "residual_channels", "dilation_cycle_length", "n_mels", "noise_schedule",
                 "inference_noise_schedule", "sample_rate", "unconditional")
        kwargs = {name: params[name] for name in names if name in params}
        if "hop_samples" in params:
            kwargs["hop_length"] = params["hop_samples"]
        kwargs.update(overrides)
        model = cls(**kwargs)
        state = dict(checkpoint["model"])
        state.pop("diffusion_embedding.embedding", None)  # a deterministic table; older saves may include it
        load_state_dict_checked(model, state, source=os.fspath(path))
        return model.eval()


# ------------------------------------------------------------------------------------------------------ helpers
def _describe(x) -> str:
    if isinstance(x, Tensor):
        return f"a {str(x.dtype).replace('torch.', '')} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
