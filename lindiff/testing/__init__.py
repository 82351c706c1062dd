"""lindiff.testing: an exact oracle and hypothesis strategies for testing diffusion samplers.

``check_sampler`` decides whether a sampler loop (yours, or a library's through an adapter such as
``lindiff.adapters.diffusers``) has the output law that lindiff computes exactly for a linear eps-model
on Gaussian data; ``probe_affine`` recovers the affine map of any black-box step.  The hypothesis
strategies live in :mod:`lindiff.testing.strategies` and the configuration search
(:func:`search_configs`, shrinking to minimal failing scheduler configurations) in
:mod:`lindiff.testing.search` (both imported on first use; they need ``hypothesis``).
"""

from .oracle import AffineProbe, NonAffineError, OracleResult, check_sampler, probe_affine, probe_loop, roundoff_tolerance

__all__ = ["AffineProbe", "NonAffineError", "OracleResult", "check_sampler", "probe_affine", "probe_loop", "roundoff_tolerance",
           "strategies", "search", "search_configs"]


def __getattr__(name):
    if name in ("strategies", "search"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name == "search_configs":
        from .search import search_configs

        return search_configs
    raise AttributeError(name)
