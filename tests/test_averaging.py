"""Checkpoint averaging (fastsep.models.averaging) and ``fastsep average``."""
import pytest
import torch

from fastsep.cli import main as cli_main
from fastsep.models.averaging import average_models
from fastsep.models.convtasnet import ConvTasNet
from fastsep.models.io import load_model, save_model


def _tiny(seed, **kw):
    torch.manual_seed(seed)
    args = dict(n_src=2, n_filters=8, kernel_size=8, stride=4, bn_chan=8, hid_chan=8, skip_chan=8, n_blocks=2,
                n_repeats=1)
    args.update(kw)
    return ConvTasNet(**args)


def test_average_is_the_elementwise_mean():
    models = [_tiny(seed) for seed in (0, 1, 2)]
    avg = average_models(models)
    states = [m.state_dict() for m in models]
    for key, value in avg.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (states[0][key] + states[1][key] + states[2][key]) / 3)
    assert not avg.training and avg.config == models[0].config
    # the inputs are left as they were
    torch.testing.assert_close(models[0].state_dict()[key], states[0][key])


def test_average_of_one_model_changes_nothing_and_runs():
    model = _tiny(0).eval()
    avg = average_models([model])
    x = torch.randn(1, 800)
    torch.testing.assert_close(avg(x), model(x))


def test_models_of_other_configs_or_classes_are_refused():
    with pytest.raises(ValueError, match="configs"):
        average_models([_tiny(0), _tiny(1, n_blocks=3)])
    with pytest.raises(ValueError, match="cannot average"):
        average_models([_tiny(0), torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="no models"):
        average_models([])


def test_cli_writes_a_loadable_average(tmp_path, capsys):
    dirs = []
    for seed in (0, 1):
        save_model(_tiny(seed), tmp_path / f"s{seed}")
        dirs.append(str(tmp_path / f"s{seed}"))
    assert cli_main(["average", *dirs, "--out", str(tmp_path / "avg")]) == 0
    avg = load_model(tmp_path / "avg")
    a, b = (load_model(d).state_dict() for d in dirs)
    key = next(k for k, v in a.items() if v.is_floating_point())
    torch.testing.assert_close(avg.state_dict()[key], (a[key] + b[key]) / 2)
    # bad calls: one folder, --out among the inputs, a missing folder
    assert cli_main(["average", dirs[0], "--out", str(tmp_path / "x")]) == 2
    assert cli_main(["average", *dirs, "--out", dirs[1]]) == 2
    assert cli_main(["average", dirs[0], str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert "no model folder" in capsys.readouterr().err
