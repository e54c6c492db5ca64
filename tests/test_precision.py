"""precision="auto": bfloat16 where the CPU has AMX and the model fills its tiles, or on an AMD CPU with AVX512-BF16;
float32 everywhere else."""
import pytest
import torch

from fastsep import Separator, precision
from fastsep.models.combiner import Combiner
from fastsep.models.convtasnet import ConvTasNet
from fastsep.models.diffwave import DiffWave

SR = 8000


def _vocoder(channels):
    return DiffWave(residual_layers=2, residual_channels=channels, dilation_cycle_length=2, n_mels=40,
                    sample_rate=SR, hop_length=128)


@pytest.mark.parametrize("amx", [True, False])
def test_auto_takes_bfloat16_only_on_amx_for_tile_sized_models(amx, monkeypatch):
    monkeypatch.setattr(precision, "amx_available", lambda: amx)
    monkeypatch.setattr(precision, "amd_bf16_available", lambda: False)
    fast = "bfloat16" if amx else "float32"
    assert precision.resolve_vocoder_precision("auto", _vocoder(32), "cpu") == fast
    assert precision.resolve_vocoder_precision("auto", _vocoder(64), torch.device("cpu")) == fast
    # narrower stacks take the vdpbf16ps path, no faster than float32 on Intel; CUDA runs its stack in float32
    assert precision.resolve_vocoder_precision("auto", _vocoder(16), "cpu") == "float32"
    assert precision.resolve_vocoder_precision("auto", _vocoder(32), "cuda") == "float32"
    assert precision.resolve_vocoder_precision("auto", None, "cpu") == "float32"
    assert precision.resolve_combiner_precision("auto", "cpu") == fast
    assert precision.resolve_combiner_precision("auto", "cuda") == "float32"
    for explicit in ("float32", "bfloat16"):  # an explicit choice is kept as given
        assert precision.resolve_vocoder_precision(explicit, _vocoder(16), "cpu") == explicit
        assert precision.resolve_combiner_precision(explicit, "cuda") == explicit


def test_auto_takes_bfloat16_on_amd_avx512_bf16(monkeypatch):
    monkeypatch.setattr(precision, "amx_available", lambda: False)
    monkeypatch.setattr(precision, "amd_bf16_available", lambda: True)
    # vdpbf16ps takes any multiple of 4 channels; not a multiple of 4, or CUDA, stays float32
    for channels in (16, 32, 64):
        assert precision.resolve_vocoder_precision("auto", _vocoder(channels), "cpu") == "bfloat16"
    assert precision.resolve_vocoder_precision("auto", _vocoder(18), "cpu") == "float32"
    assert precision.resolve_vocoder_precision("auto", _vocoder(32), "cuda") == "float32"
    assert precision.resolve_combiner_precision("auto", "cpu") == "bfloat16"
    assert precision.resolve_combiner_precision("auto", "cuda") == "float32"


@pytest.mark.parametrize("vendor,variant,expected", [
    ("AuthenticAMD", "avx512bf16", True), ("GenuineIntel", "avx512bf16", False), ("AuthenticAMD", "amx", False),
    ("AuthenticAMD", "none", False), ("AuthenticAMD", None, False), ("", "avx512bf16", False)])
def test_amd_bf16_needs_an_amd_cpu_and_the_vdpbf16ps_kernel(vendor, variant, expected, monkeypatch):
    from fastsep import _ext

    monkeypatch.setattr(precision, "_cpu_vendor", lambda: vendor)
    monkeypatch.setattr(_ext, "diffwave_bf16_variant", lambda: variant)
    assert precision.amd_bf16_available() is expected


@pytest.mark.parametrize("amx", [True, False])
def test_separator_reports_the_resolved_precision(amx, monkeypatch):
    monkeypatch.setattr(precision, "amx_available", lambda: amx)
    monkeypatch.setattr(precision, "amd_bf16_available", lambda: False)
    fast = "bfloat16" if amx else "float32"
    sep = Separator(ConvTasNet.small(2, SR), _vocoder(32), Combiner(), sample_rate=SR,
                    vocoder_precision="auto", combiner_precision="auto")
    assert (sep.vocoder_precision, sep.combiner_precision) == (fast, fast)
    sep = Separator(ConvTasNet.small(2, SR), _vocoder(16), Combiner(), sample_rate=SR,
                    vocoder_precision="auto", combiner_precision="auto")
    assert (sep.vocoder_precision, sep.combiner_precision) == ("float32", fast)
    # the constructors' default stays float32 (reproducible arithmetic); the CLI asks for "auto"
    sep = Separator(ConvTasNet.small(2, SR), _vocoder(32), Combiner(), sample_rate=SR)
    assert (sep.vocoder_precision, sep.combiner_precision) == ("float32", "float32")
    # the method object takes "auto" too (Separator(method=...))
    again = Separator(method=sep.method, vocoder_precision="auto", combiner_precision="auto")
    assert (again.vocoder_precision, again.combiner_precision) == (fast, fast)


def test_bad_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="vocoder_precision must be one of 'float32', 'bfloat16', 'auto'"):
        Separator(ConvTasNet.small(2, SR), _vocoder(32), Combiner(), sample_rate=SR, vocoder_precision="half")
    with pytest.raises(ValueError, match="combiner_precision must be one of"):
        Separator(ConvTasNet.small(2, SR), _vocoder(32), Combiner(), sample_rate=SR, combiner_precision="fp16")


def test_cli_defaults(monkeypatch):
    # serving commands default to auto; eval keeps float32, the arithmetic of the README's figures
    import argparse

    from fastsep.commands import bench, demo, evaluate, separate

    for module, default in ((separate, "auto"), (demo, "auto"), (bench, "auto"), (evaluate, "float32")):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        action = next(a for a in parser._actions if a.dest == "precision")
        assert action.default == default, module.__name__
        assert set(action.choices) == {"auto", "float32", "bfloat16"}, module.__name__
