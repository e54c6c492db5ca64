"""fastsep.bounds against closed forms (Gaussian sources, two Laplace sources by quadrature) and the paper's claims."""
import math

import numpy as np
import pytest
from scipy import integrate

from fastsep import bounds


@pytest.mark.parametrize("n_src,sigma2", [(2, 0.0), (2, 0.5), (5, 0.01), (20, 2.0)])
def test_gaussian_sources_match_closed_form(n_src, sigma2):
    # v, s_k ~ N(0, 1), n ~ N(0, sigma2): I(v; v + rest) = 0.5 log(var(y) / var(rest)).
    expected = 0.5 * math.log((n_src + sigma2) / (n_src - 1 + sigma2))
    assert bounds.mutual_information(sigma2, n_src, source="gaussian") == pytest.approx(expected, rel=1e-6)


def test_two_laplace_sources_match_quadrature():
    # Sum of two iid Laplace(b): f(z) = (1 + |z|/b) exp(-|z|/b) / (4b); h(Laplace(b)) = 1 + log(2b).
    b = 1 / math.sqrt(2)

    def f(z):
        return (1 + abs(z) / b) * math.exp(-abs(z) / b) / (4 * b)

    h_sum = 2 * integrate.quad(lambda z: -f(z) * math.log(f(z)) if f(z) > 0 else 0.0, 0, 80, limit=200)[0]
    expected = h_sum - (1 + math.log(2 * b))
    assert bounds.mutual_information(0.0, 2) == pytest.approx(expected, rel=1e-5)


def test_laplace_mixture_tends_to_gaussian_for_many_sources():
    # For large C the information is close to (slightly above) the Gaussian-source value.
    lap, gau = bounds.mutual_information(0.0, 20), bounds.mutual_information(0.0, 20, source="gaussian")
    assert gau <= lap <= gau * 1.01


def test_rho_close_to_one_for_small_noise_and_falls_with_noise():
    sigma2s = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    small = []
    for n_src in (2, 3, 5, 10, 20):
        curve = bounds.rho_curve(sigma2s, n_src)
        assert np.all(np.diff(curve) < 0), curve  # strictly falls as sigma^2 grows
        assert np.all(curve <= 1.0) and np.all(curve > 0)
        small.append(curve[:3].min())
        assert curve[-1] < 0.7  # a poor generator keeps well under the mixture's information
    # The paper's eq. 18: rho(sigma^2 <= 1e-2) ~ 1 for C in [2, 20]; here the worst case is C = 2 at 1e-2 (0.985).
    assert min(small) > 0.98


def test_rho_degrades_faster_for_fewer_sources():
    # Paper, Figure 1 discussion: for sigma^2 >= 1e-2 rho drops faster when C is smaller.
    at = [bounds.rho(1.0, c) for c in (2, 5, 10, 20)]
    assert at == sorted(at)


def test_sdr_bounds():
    det = bounds.deterministic_sdr_bound(0.4, length=16000, width=160, variance=1.0)
    assert det == pytest.approx(10 * math.log10(100 * 0.4))
    gen = bounds.generative_sdr_bound(0.4, length=16000, width=160)
    assert gen - det == pytest.approx(10 * math.log10(2)) and abs(gen - det - 3.0) < 0.02
    assert bounds.generative_sdr_bound(0.4, 16000, 160, rho_value=0.5) - det == pytest.approx(10 * math.log10(1.5))
    arr = bounds.deterministic_sdr_bound(np.array([0.1, 1.0]), 10, 1)
    np.testing.assert_allclose(arr, [0.0, 10.0])


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="n_src"):
        bounds.rho(0.01, 1)
    with pytest.raises(ValueError, match="sigma2"):
        bounds.rho(-1.0, 2)
    with pytest.raises(ValueError, match="source"):
        bounds.mutual_information(0.1, 2, source="cauchy")
    with pytest.raises(ValueError, match="width"):
        bounds.deterministic_sdr_bound(0.4, 100, 0)
    with pytest.raises(ValueError, match="rho_value"):
        bounds.generative_sdr_bound(0.4, 100, 1, rho_value=2.0)


# ------------------------------------------------------------------------------------------------------------ figure
def test_plot_bounds_command_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional)")
    import json

    from matplotlib import image as mpimg

    from fastsep import cli

    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"n_src": 3, "results": {"backbone": {"si_sdr": 4.0, "si_sdri": 7.0, "n": 5},
                                                      "full": {"si_sdr": 4.5, "si_sdri": 7.5, "n": 5}}}))
    out = tmp_path / "bounds.png"
    rc = cli.main(["plot", "bounds", str(out), "--sources", "2,3", "--eval", str(ev), "--measured", "2:5.5:mine"])
    assert rc == 0, capsys.readouterr().err
    assert "3 measured point(s)" in capsys.readouterr().out
    img = mpimg.imread(str(out))
    assert img.shape[0] > 300 and img.shape[1] > 800
    assert cli.main(["plot", "bounds", str(tmp_path / "x.png"), "--measured", "two:5"]) == 2
    assert cli.main(["plot", "bounds", str(tmp_path / "x.png"), "--sources", "1-3"]) == 2


def test_bounds_figure_draws_the_module_values():
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional)")
    from fastsep.plots import Measured, bounds_figure

    fig = bounds_figure([Measured(2, 5.3, "full")], n_srcs=[2, 4], sigma2s=[1e-3, 1e-1, 1.0], length_s=2.0,
                        segment_ms=10.0)
    ax_rho, ax_sdr = fig.axes[0], fig.axes[1]
    rho_lines = ax_rho.get_lines()[:2]
    np.testing.assert_allclose(rho_lines[0].get_ydata(), bounds.rho_curve([1e-3, 1e-1, 1.0], 2))
    np.testing.assert_allclose(rho_lines[1].get_ydata(), bounds.rho_curve([1e-3, 1e-1, 1.0], 4))
    det, gen = ax_sdr.get_lines()[:2]
    info = [bounds.mutual_information(0.0, c) for c in (2, 3, 4)]
    np.testing.assert_allclose(det.get_ydata(), [10 * math.log10(200 * i) for i in info])
    np.testing.assert_allclose(gen.get_ydata() - det.get_ydata(), 10 * math.log10(2))
    point = ax_sdr.get_lines()[2]
    assert list(point.get_ydata()) == [5.3] and "full" in point.get_label()


def test_measured_from_old_eval_json_reads_n_src_beside_it(tmp_path):
    import json

    from fastsep.commands.plot import measured_from_eval

    (tmp_path / "eval.json").write_text(json.dumps({"results": {"full": {"si_sdr": 5.5, "si_sdri": 5.6, "n": 4}}}))
    with pytest.raises(ValueError, match="n_src"):
        measured_from_eval(str(tmp_path / "eval.json"))
    (tmp_path / "bundle.json").write_text(json.dumps({"n_src": 2}))
    (m,) = measured_from_eval(str(tmp_path / "eval.json"))
    assert (m.n_src, m.si_sdr) == (2, 5.5) and m.label == "full, eval"
