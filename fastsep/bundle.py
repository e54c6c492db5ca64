"""Model bundles on disk: every method's networks as safetensors + JSON, and a manifest saying which method they make.

Layout of a bundle folder::

    bundle.json          manifest: format, method, sample_rate, n_src, components, options, free-form extra
    <stem>.safetensors   one network per component, written by fastsep.models.io.save_model (class + config in
    <stem>.json          the JSON, the weights' SHA-256 checked on load, names and shapes loaded strictly)

``method`` is one of :data:`METHODS`; a manifest without it (bundles written before the key existed) is a
Separate-And-Diffuse bundle. Components and options per method:

* ``separate_and_diffuse``: ``backbone`` (B), optional ``vocoder`` (GM: without it only mode "backbone") and
  ``combiner`` (F: without it no mode "full"); no options.
* ``diffsep``: ``score``, the NCSNpp score network (its weight average, when training kept one); options ``sde``
  (MixSDE's arguments), ``n_steps``, ``snr``, ``corrector_steps``, ``enhancement``
  (:func:`write_diffsep_bundle` writes one from what ``fastsep train diffsep`` leaves).
* ``priors``: ``prior0``, ``prior1``, ... (TFAttentionUNet or unconditional DiffWave noise predictors); options
  ``priors`` (one entry per distinct prior: ``{"component": "prior0"}`` or ``{"gaussian": variance}`` for a white
  Gaussian noise prior), ``tracks`` (for each output track, the index of its prior: ``[0, 0]`` is two talkers of
  one speech prior), ``step`` (the guidance of mode "prior": hybrid, dsg or dps), ``peak`` and ``solver`` (the
  remaining :class:`fastsep.sampling.priors.GuidedSolver` options) (:func:`write_priors_bundle`).

The manifest is written last, so a folder whose writing was interrupted has no manifest and is refused on load.
Everything a manifest says is checked on load, each problem reported with the file it is in.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from torch import nn

__all__ = ["save_bundle", "load_bundle", "read_manifest", "is_bundle", "component_stem", "bundle_method", "save_method",
           "load_method", "write_diffsep_bundle", "write_priors_bundle", "MANIFEST", "COMPONENTS", "METHODS"]

MANIFEST = "bundle.json"
COMPONENTS = ("backbone", "vocoder", "combiner")
#: The methods a bundle can hold (its manifest's ``method``).
METHODS = ("separate_and_diffuse", "diffsep", "priors")
_FORMAT = 1
#: The networks a priors bundle may hold (a DiffWave must be unconditional, checked when it becomes a prior).
_PRIOR_CLASSES = ("TFAttentionUNet", "DiffWave")
_DIFFSEP_OPTIONS = ("sde", "n_steps", "snr", "corrector_steps", "enhancement")

PathLike = Union[str, "os.PathLike[str]"]


def is_bundle(directory) -> bool:
    """Whether ``directory`` holds a bundle manifest."""
    return os.path.isfile(os.path.join(os.fspath(directory), MANIFEST))


def component_stem(directory, component: str) -> Optional[str]:
    """The file stem of one part in ``directory``: the stem a bundle's manifest names for ``component`` (None when
    the bundle has no such part), or ``"model"`` for a model folder (a run's ``last/``, ``best/``, ``steps/N``)."""
    return read_manifest(directory)["components"].get(component) if is_bundle(directory) else "model"


def _write_manifest(directory: str, method: str, sample_rate: int, n_src: int, components: Dict[str, str],
                    options: Optional[dict], extra: Optional[Dict[str, Any]]) -> str:
    from .models.io import atomic_write_json

    manifest = {"format": _FORMAT, "method": method, "sample_rate": int(sample_rate), "n_src": int(n_src),
                "components": components, "extra": dict(extra or {})}
    if options is not None:
        manifest["options"] = options
    try:
        json.dumps(manifest)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"bundle manifest must be JSON-serialisable (options, extra): {exc}") from None
    path = os.path.join(directory, MANIFEST)
    atomic_write_json(path, manifest)
    return path


def save_bundle(
    directory,
    backbone: nn.Module,
    vocoder: Optional[nn.Module] = None,
    combiner: Optional[nn.Module] = None,
    sample_rate: int = 8000,
    n_src: int = 2,
    extra: Optional[Dict[str, Any]] = None,
) -> str:
    """Write a Separate-And-Diffuse bundle (the three models, then the manifest) into ``directory`` (created);
    returns the manifest's path."""
    from .models.io import save_model

    if backbone is None:
        raise ValueError("save_bundle: a bundle needs at least a backbone")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    present = {}
    for name, model in zip(COMPONENTS, (backbone, vocoder, combiner)):
        if model is not None:
            save_model(model, directory, name)
            present[name] = name
    return _write_manifest(directory, "separate_and_diffuse", sample_rate, n_src, present, None, extra)


# ------------------------------------------------------------------------------------------------------ reading
def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def read_manifest(directory) -> Dict[str, Any]:
    """The parsed ``bundle.json`` of ``directory``, with clear errors for a missing or malformed manifest.

    ``method`` is filled in (``separate_and_diffuse`` for bundles written before the key existed)."""
    path = os.path.join(os.fspath(directory), MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(directory)} is not a fastsep bundle: {MANIFEST} is missing "
                                f"(bundles are written by Separator.save_pretrained, fastsep.bundle.save_bundle, "
                                f"write_diffsep_bundle or write_priors_bundle)")
    with open(path, "r", encoding="utf-8") as fh:
        try:
            manifest = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} must hold a JSON object")
    fmt = manifest.get("format", _FORMAT)
    if not _positive_int(fmt) or fmt > _FORMAT:
        raise ValueError(f"{path} has format {fmt!r}; this fastsep reads bundle format {_FORMAT} (a newer fastsep "
                         f"wrote it?)")
    method = manifest.setdefault("method", "separate_and_diffuse")
    if method not in METHODS:
        raise ValueError(f"{path}: unknown method {method!r}; this fastsep serves {', '.join(METHODS)}")
    comps = manifest.get("components")
    if not isinstance(comps, dict) or not all(isinstance(v, str) and v for v in comps.values()):
        raise ValueError(f"{path} must list its components as an object of name -> file stem")
    for key in ("sample_rate", "n_src"):
        if not _positive_int(manifest.get(key)):
            raise ValueError(f"{path}: '{key}' must be a positive integer, got {manifest.get(key)!r}")
    options = manifest.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(f"{path}: 'options' must be an object, got {type(options).__name__}")
    if method == "separate_and_diffuse":
        if "backbone" not in comps:
            raise ValueError(f"{path} must list its components, including 'backbone'")
        unknown = sorted(set(comps) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"{MANIFEST} lists an unknown component {unknown[0]!r}; known: {', '.join(COMPONENTS)}")
    elif method == "diffsep":
        if set(comps) != {"score"}:
            raise ValueError(f"{path}: a diffsep bundle has one component, 'score' (the NCSNpp score network); "
                             f"it lists {sorted(comps)}")
        unknown = sorted(set(options) - set(_DIFFSEP_OPTIONS))
        if unknown:
            raise ValueError(f"{path}: unknown diffsep options {unknown}; known: {', '.join(_DIFFSEP_OPTIONS)}")
        if "sde" in options and not isinstance(options["sde"], dict):
            raise ValueError(f"{path}: options.sde must be an object of MixSDE arguments")
    else:
        _check_priors_manifest(path, manifest, comps, options)
    return manifest


def _check_priors_manifest(path: str, manifest: dict, comps: dict, options: dict) -> None:
    from .sampling.priors import STEP_RULES

    priors = options.get("priors")
    if not isinstance(priors, list) or not priors:
        raise ValueError(f"{path}: options.priors must list the priors (one entry per distinct prior)")
    for i, entry in enumerate(priors):
        ok = isinstance(entry, dict) and len(entry) == 1 and (
            entry.get("component") in comps or (
                isinstance(entry.get("gaussian"), (int, float)) and not isinstance(entry.get("gaussian"), bool)
                and math.isfinite(entry["gaussian"]) and entry["gaussian"] > 0))
        if not ok:
            raise ValueError(f"{path}: options.priors[{i}] must be {{\"component\": <one of {sorted(comps)}>}} or "
                             f"{{\"gaussian\": <positive variance>}}, got {entry!r}")
    if not any("component" in e for e in priors):
        raise ValueError(f"{path}: a priors bundle needs at least one trained prior network (its schedule and rate)")
    tracks = options.get("tracks")
    if not isinstance(tracks, list) or not all(isinstance(t, int) and not isinstance(t, bool) and
                                               0 <= t < len(priors) for t in tracks):
        raise ValueError(f"{path}: options.tracks must give, for each output track, the index of its prior in "
                         f"options.priors (0..{len(priors) - 1}), got {tracks!r}")
    if len(tracks) != manifest["n_src"]:
        raise ValueError(f"{path}: n_src is {manifest['n_src']} but options.tracks names {len(tracks)} tracks")
    if options.get("step", "hybrid") not in STEP_RULES:
        raise ValueError(f"{path}: options.step must be one of {', '.join(STEP_RULES)}, got {options.get('step')!r}")
    peak = options.get("peak", 0.95)
    if peak is not None and not (isinstance(peak, (int, float)) and 0 < peak <= 1):
        raise ValueError(f"{path}: options.peak must be in (0, 1] or null, got {peak!r}")
    if not isinstance(options.get("solver", {}), dict):
        raise ValueError(f"{path}: options.solver must be an object of GuidedSolver options")


def bundle_method(directory) -> str:
    """The method a bundle holds (:data:`METHODS`)."""
    return read_manifest(directory)["method"]


def load_bundle(directory, map_location="cpu") -> Dict[str, Any]:
    """Load a Separate-And-Diffuse bundle: ``{"backbone", "vocoder", "combiner" (modules or None), "sample_rate",
    "n_src", "extra"}``. Other methods' bundles: :func:`load_method`."""
    from .models.io import load_model

    manifest = read_manifest(directory)
    if manifest["method"] != "separate_and_diffuse":
        raise ValueError(f"{os.fspath(directory)} holds a {manifest['method']} bundle, not Separate-And-Diffuse; "
                         f"load it with fastsep.bundle.load_method or Separator.from_pretrained")
    out: Dict[str, Any] = {k: None for k in COMPONENTS}
    for name, stem in manifest["components"].items():
        out[name] = load_model(directory, stem, map_location=map_location)
    out.update(sample_rate=manifest["sample_rate"], n_src=manifest["n_src"], extra=manifest.get("extra", {}))
    return out


def load_method(directory, map_location="cpu", **options):
    """The method object of any bundle (:class:`~fastsep.methods.separate_and_diffuse.SeparateAndDiffuse`,
    :class:`~fastsep.methods.diffsep.DiffSepMethod` or :class:`~fastsep.methods.priors.PriorSeparation`), its
    networks on ``map_location`` in eval mode. ``options`` override the bundle's method options (e.g. ``n_steps`` of
    DiffSep, ``vocoder_precision`` of Separate-And-Diffuse, ``init_step`` of the prior solver)."""
    directory = os.fspath(directory)
    manifest = read_manifest(directory)
    path = os.path.join(directory, MANIFEST)
    method = manifest["method"]
    if method == "separate_and_diffuse":
        from .methods.separate_and_diffuse import SeparateAndDiffuse

        parts = load_bundle(directory, map_location)
        return SeparateAndDiffuse(parts["backbone"], parts["vocoder"], parts["combiner"],
                                  sample_rate=parts["sample_rate"], n_src=parts["n_src"], **options).to(map_location)
    if method == "diffsep":
        return _load_diffsep(directory, path, manifest, map_location, options)
    return _load_priors(directory, path, manifest, map_location, options)


def _load_diffsep(directory: str, path: str, manifest: dict, map_location, overrides: dict):
    from .methods.diffsep import DiffSepMethod, load_score_model
    from .sampling.diffsep import MixSDE

    model = load_score_model(directory, manifest["components"]["score"]).to(map_location)
    options = dict(manifest.get("options", {}))
    try:
        sde = MixSDE(**options.pop("sde")) if "sde" in options else None
    except TypeError as exc:
        raise ValueError(f"{path}: options.sde does not fit MixSDE: {exc}") from None
    options.update(overrides)
    if model.n_src != manifest["n_src"] or model.sample_rate != manifest["sample_rate"]:
        raise ValueError(f"{path} says n_src {manifest['n_src']} at {manifest['sample_rate']} Hz, but its score "
                         f"network separates {model.n_src} at {model.sample_rate} Hz")
    try:
        return DiffSepMethod(model, sde=sde, sample_rate=manifest["sample_rate"], **options)
    except TypeError as exc:
        raise ValueError(f"{path}: options do not fit DiffSepMethod: {exc}") from None


def _load_priors(directory: str, path: str, manifest: dict, map_location, overrides: dict):
    from .methods.priors import PriorSeparation, as_prior
    from .models.io import load_model, read_model_info
    from .sampling.priors import GaussianPrior

    options = manifest["options"]
    nets: Dict[int, Any] = {}
    for i, entry in enumerate(options["priors"]):
        if "component" in entry:
            stem = manifest["components"][entry["component"]]
            cls = read_model_info(directory, stem)["class"]
            if cls not in _PRIOR_CLASSES:
                raise ValueError(f"{path}: component {entry['component']!r} holds a {cls}, not a source prior "
                                 f"({', '.join(_PRIOR_CLASSES)})")
            net = load_model(directory, stem, map_location=map_location)
            try:
                nets[i] = as_prior(net.eval().requires_grad_(False))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}: component {entry['component']!r} is not a source prior: {exc}") from None
    # A Gaussian prior shares the networks' schedule: one solve needs one.
    schedule = next(iter(nets.values())).schedule
    resolved = [nets[i] if i in nets else GaussianPrior(float(e["gaussian"]), schedule).to(map_location)
                for i, e in enumerate(options["priors"])]
    kwargs = dict(step=options.get("step", "hybrid"), peak=options.get("peak", 0.95), **options.get("solver", {}))
    kwargs.update(overrides)
    try:
        method = PriorSeparation([resolved[t] for t in options["tracks"]], sample_rate=manifest["sample_rate"],
                                 **kwargs)
    except TypeError as exc:
        raise ValueError(f"{path}: options do not fit the prior solver: {exc}") from None
    return method


# ------------------------------------------------------------------------------------------------------ writing
def save_method(directory, method, extra: Optional[Dict[str, Any]] = None) -> str:
    """Write any method object as a bundle into ``directory`` (created); returns the manifest's path."""
    name = getattr(method, "name", None)
    if name == "separate_and_diffuse":
        return save_bundle(directory, method.backbone, method.vocoder, method.combiner, method.sample_rate,
                           method.n_src, extra)
    if name == "diffsep":
        return _save_diffsep(directory, method, extra)
    if name == "priors":
        return _save_priors(directory, method, extra)
    raise TypeError(f"save_method: cannot write a {type(method).__name__}; bundles hold {', '.join(METHODS)}")


def _save_diffsep(directory, method, extra) -> str:
    from .models.io import save_model

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    save_model(method.model, directory, "score")
    return _write_manifest(directory, "diffsep", method.sample_rate, method.n_src, {"score": "score"},
                           method.settings(), extra)


def _save_priors(directory, method, extra) -> str:
    from .models.io import save_model
    from .sampling.priors import DiffWavePrior, GaussianPrior, NetworkPrior

    if method.sample_rate is None:
        raise ValueError("write_priors_bundle: the priors do not say their sample rate; pass sample_rate=")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    distinct = method.distinct_priors()
    entries: List[dict] = []
    components: Dict[str, str] = {}
    for i, prior in enumerate(distinct):
        if isinstance(prior, GaussianPrior):
            if prior.variance.dim() != 0:
                raise ValueError("write_priors_bundle: only white Gaussian priors (a scalar variance) can be saved")
            entries.append({"gaussian": float(prior.variance)})
            continue
        net = prior.net if isinstance(prior, NetworkPrior) else prior.model if isinstance(prior, DiffWavePrior) \
            else None
        if net is None:
            raise TypeError(f"write_priors_bundle: cannot save a {type(prior).__name__}; bundles hold network priors "
                            f"(TFAttentionUNet, unconditional DiffWave) and white Gaussian priors")
        stem = f"prior{len(components)}"
        save_model(net, directory, stem)
        components[stem] = stem
        entries.append({"component": stem})
    if not components:
        raise ValueError("write_priors_bundle: need at least one trained prior network")
    settings = method.settings()
    options = {"priors": entries, "tracks": settings["tracks"], "step": settings["step"], "peak": settings["peak"],
               "solver": settings["solver"]}
    return _write_manifest(directory, "priors", method.sample_rate, method.n_src, components, options, extra)


def _model_folder(path: str) -> str:
    """A trained model's folder: ``path`` itself when it holds ``model.json``, else its ``best/``."""
    if os.path.isfile(os.path.join(path, "model.json")):
        return path
    best = os.path.join(path, "best")
    if os.path.isfile(os.path.join(best, "model.json")):
        return best
    raise FileNotFoundError(f"{path} holds no trained model (model.json), nor does {best}: give the run folder of "
                            f"`fastsep train diffsep` or its best/ or last/")


def write_diffsep_bundle(directory: PathLike, model_dir: PathLike, extra: Optional[Dict[str, Any]] = None,
                         **overrides: Any) -> str:
    """A DiffSep bundle in ``directory`` from a trained score model: ``model_dir`` is the run folder of ``fastsep
    train diffsep`` (its ``best/`` is used) or a checkpoint folder (``best/``, ``last/``). The score network's weight
    average is stored (when training kept one), with the sampler settings of the run's ``diffsep.json``;
    ``overrides`` replace them (``n_steps``, ``snr``, ``corrector_steps``, ``enhancement``). Returns the manifest's
    path."""
    from .methods.diffsep import DiffSepMethod

    method = DiffSepMethod.from_pretrained(_model_folder(os.fspath(model_dir)), **overrides)
    return save_method(directory, method, extra)


def write_priors_bundle(directory: PathLike, priors: Sequence[Any], tracks: Optional[Sequence[int]] = None,
                        step: str = "hybrid", peak: Optional[float] = 0.95, sample_rate: Optional[int] = None,
                        extra: Optional[Dict[str, Any]] = None, **solver_options: Any) -> str:
    """A priors bundle in ``directory``.

    Args:
        priors: trained prior folders (what ``fastsep train prior`` writes: ``<run>``, ``<run>/prior`` or a
            checkpoint), prior objects, prior networks, or :class:`~fastsep.sampling.priors.GaussianPrior` (white).
        tracks: for each output track, the index of its prior in ``priors``. Default: two talkers of one prior when
            one is given, else one track per prior.
        step: the guidance of mode "prior" ("hybrid", "dsg" or "dps"); the other two stay reachable as modes
            ``prior-<step>``.
        peak, sample_rate, solver_options: as :class:`~fastsep.methods.priors.PriorSeparation` (e.g.
            ``init_step``, ``start_step``, ``hybrid_scale``, ``dsg_scale``, ``zeta``).

    Returns the manifest's path.
    """
    from .methods.priors import PriorSeparation, as_prior

    if isinstance(priors, (str, os.PathLike)) or not isinstance(priors, Sequence) or not priors:
        raise ValueError("write_priors_bundle: give a non-empty list of priors (folders or prior objects)")
    resolved = [as_prior(p) for p in priors]
    if tracks is None:
        tracks = [0, 0] if len(resolved) == 1 else list(range(len(resolved)))
    tracks = list(tracks)
    if not tracks or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < len(resolved)
                             for t in tracks):
        raise ValueError(f"write_priors_bundle: tracks must be indices into priors (0..{len(resolved) - 1}), "
                         f"got {tracks!r}")
    method = PriorSeparation([resolved[t] for t in tracks], sample_rate=sample_rate, step=step, peak=peak,
                             **solver_options)
    return save_method(directory, method, extra)
