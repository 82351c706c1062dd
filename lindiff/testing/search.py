r"""Search scheduler configurations for failures, and shrink each to the smallest failing configuration.

:func:`search_configs` draws configurations with hypothesis (scheduler, beta schedule, timestep
spacing, number of steps, sigma option, prediction type, solver order / algorithm / type where the
scheduler takes them), runs lindiff's exact oracle on each (:func:`lindiff.adapters.diffusers.check_scheduler`
by default) and, when one fails — a law off the tolerance, NaN output, or the scheduler raising on a
configuration it accepted —, lets hypothesis shrink it to a minimal failing configuration (fewest
steps, earliest options).  Each finding is then excluded (by scheduler, verdict and known-issue key)
and the search continues, so one call reports up to ``findings`` distinct problems.  Configurations
that diffusers or the adapter refuse are not findings.  Needs ``hypothesis`` (and ``diffusers`` for the
default space and check).
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass, field
from typing import Callable

try:
    from hypothesis import HealthCheck, find, settings
    from hypothesis import strategies as st
    from hypothesis.errors import NoSuchExample
except ImportError as exc:  # pragma: no cover
    raise ImportError("lindiff.testing.search needs hypothesis: pip install 'lindiff[test]'") from exc

from ..tables import Column, Table

__all__ = ["Finding", "SearchResult", "scheduler_configs", "search_configs"]

_SIGMA_OPTIONS = (None, "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


@dataclass(frozen=True)
class Finding:
    """A minimal failing configuration: ``scheduler(**config)`` run for ``steps`` steps (``step_kwargs``
    passed to ``step``) gave ``verdict`` (FAIL / NaN / CRASH / UNDEFINED) with ``message``; ``known`` is the
    known upstream issue it falls under ("" for a new finding)."""

    scheduler: str
    config: dict
    steps: int
    step_kwargs: dict
    verdict: str
    message: str
    known: str = ""


@dataclass(frozen=True)
class SearchResult:
    findings: tuple[Finding, ...]
    examples: int  # configurations tried
    refused: int  # configurations refused by diffusers or the adapter (not findings)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def table(self) -> Table:
        cols = [Column("scheduler"), Column("config", note="minimal failing configuration (options off the defaults)"),
                Column("steps"), Column("verdict"), Column("known upstream issue"), Column("message")]
        rows = [[f.scheduler, ", ".join(f"{k}={v}" for k, v in f.config.items()) or "defaults", f.steps, f.verdict,
                 f.known or "new", f.message[:200]] for f in self.findings]
        caption = (f"search_configs: {len(self.findings)} finding(s) in {self.examples} configurations "
                   f"({self.refused} refused by diffusers or the adapter)")
        return Table(caption, cols, rows, self.notes)


def _accepts(cls, key: str) -> bool:
    try:
        return key in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


@st.composite
def scheduler_configs(draw, schedulers=None, max_steps: int = 30):
    """``(class name, config, steps, step_kwargs)`` for the supported diffusers schedulers; options a
    scheduler does not take are left out; the defaults come first (hypothesis shrinks towards them)."""
    import diffusers as D

    from ..adapters.diffusers import SUPPORTED

    names = list(schedulers) if schedulers is not None else list(SUPPORTED)
    name = draw(st.sampled_from(names))
    cls = getattr(D, name)
    cfg: dict = {}

    def option(key, values):
        if _accepts(cls, key):
            value = draw(st.sampled_from(values))
            if value is not None:
                cfg[key] = value

    option("beta_schedule", [None, "scaled_linear", "squaredcos_cap_v2", "linear"])
    option("timestep_spacing", [None, "leading", "trailing", "linspace"])
    option("prediction_type", [None, "v_prediction", "sample"])
    sigma = draw(st.sampled_from([o for o in _SIGMA_OPTIONS if o is None or _accepts(cls, o)]))
    if sigma:
        cfg[sigma] = True
    option("solver_order", [None, 1, 2, 3])
    option("lower_order_final", [None, False])
    option("final_sigmas_type", [None, "sigma_min", "zero"])
    if name in ("DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler"):
        option("algorithm_type", [None, "sde-dpmsolver++", "dpmsolver", "sde-dpmsolver"])
        option("solver_type", [None, "heun"])
    if name == "UniPCMultistepScheduler":
        option("solver_type", [None, "bh1"])
        option("predict_x0", [None, False])
    if name == "PNDMScheduler":
        option("skip_prk_steps", [None, True])
    if _accepts(cls, "clip_sample"):
        cfg["clip_sample"] = False  # non-affine options are refused, not searched
    steps = draw(st.integers(1 if name not in ("LCMScheduler", "TCDScheduler") else 1, max_steps))
    kw: dict = {}
    if name in ("DDIMScheduler", "TCDScheduler"):
        eta = draw(st.sampled_from([None, 1.0, 0.5]))
        if eta is not None:
            kw["eta"] = eta
    return name, cfg, steps, kw


def _default_check(X):
    from ..adapters.diffusers import _verdict, check_scheduler, known_issue

    def check(name, cfg, steps, kw):
        import diffusers as D

        scheduler = getattr(D, name)(**cfg)
        kwargs = dict(kw)
        eta = kwargs.pop("eta", None)
        res = check_scheduler(scheduler, steps, X, eta=eta, step_kwargs=kwargs or None)
        return _verdict(res), res.message, known_issue(name, {**cfg, "_class_name": name}, steps, kw, res.message)

    return check


def search_configs(check: Callable | None = None, space=None, *, max_examples: int = 100, findings: int = 3,
                   seed: int = 0, skip_known: bool = False, include_undefined: bool = False, X=None) -> SearchResult:
    """Find up to ``findings`` distinct failing scheduler configurations, each shrunk to a minimal one.

    Parameters
    ----------
    check : ``check(name, config, steps, step_kwargs) -> (verdict, message, known)``; ``verdict`` is
        ``"PASS"`` or a failure (FAIL, NaN, CRASH, UNDEFINED); raising ``ValueError``/``TypeError``/
        ``NotImplementedError`` means the configuration is refused (not a finding).  Default: the diffusers
        oracle on a 3-d linear model.
    space : a hypothesis strategy of ``(name, config, steps, step_kwargs)`` (default :func:`scheduler_configs`)
    max_examples : configurations hypothesis may try per finding (shrinking included)
    findings : stop after this many distinct findings
    seed : makes the search reproducible
    skip_known : look only for failures that no :data:`~lindiff.adapters.diffusers.KNOWN_ISSUES` entry explains
    include_undefined : count configurations whose method has no exact law (``UNDEFINED``: e.g. a schedule
        that repeats its last sigma) as findings; by default they are counted in the notes only
    X : training points of the linear model for the default check

    Returns
    -------
    SearchResult
        ``.findings`` (minimal failing configurations) and ``.table()``.

    >>> from hypothesis import strategies as st
    >>> space = st.tuples(st.just("toy"), st.fixed_dictionaries({}), st.integers(1, 50), st.just({}))
    >>> res = search_configs(lambda n, c, steps, kw: ("FAIL" if steps >= 7 else "PASS", "too many steps", ""),
    ...                      space, max_examples=60, findings=1)
    >>> [(f.scheduler, f.steps) for f in res.findings]  # shrunk to the smallest failing step count
    [('toy', 7)]
    """
    if check is None:
        import numpy as np

        from ..gaussian import Gaussian

        if X is None:
            X = Gaussian.from_spectrum([2.0, 0.7, 0.1], None, [0.5, 0.0, -0.5]).sample(6, np.random.default_rng(0))
        check = _default_check(X)
    space = scheduler_configs() if space is None else space
    found: list[Finding] = []
    excluded: set = set()
    tried = [0]
    refused = [0]
    undefined: set = set()
    cache: dict = {}

    def outcome(example):
        key = repr(example)
        if key not in cache:
            name, cfg, steps, kw = example
            tried[0] += 1
            try:
                cache[key] = check(name, cfg, steps, kw)
            except (ValueError, TypeError, NotImplementedError):
                refused[0] += 1
                cache[key] = None
        return cache[key]

    def failing(example) -> bool:
        out = outcome(example)
        if out is None or out[0] == "PASS":
            return False
        verdict, _, known = out
        if verdict == "UNDEFINED" and not include_undefined:
            undefined.add(repr(example))
            return False
        if skip_known and known:
            return False
        return (example[0], verdict, known.split(" ")[0] if known else "") not in excluded

    for _ in range(findings):
        try:
            minimal = find(space, failing, settings=settings(max_examples=max_examples, database=None, deadline=None,
                                                              suppress_health_check=list(HealthCheck)),
                           random=random.Random(seed + len(found)))
        except NoSuchExample:
            break
        verdict, message, known = outcome(minimal)
        name, cfg, steps, kw = minimal
        found.append(Finding(name, dict(cfg), int(steps), dict(kw), verdict, message, known))
        excluded.add((name, verdict, known.split(" ")[0] if known else ""))
    notes = ("each finding is the smallest failing configuration hypothesis reached (fewest steps, options "
             "closest to the defaults); findings are distinct by scheduler, verdict and known issue",
             f"{len(undefined)} configuration(s) had no exact law (UNDEFINED) and were not counted")
    return SearchResult(tuple(found), tried[0], refused[0], notes)
