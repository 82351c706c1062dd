"""lindiff.testing: an exact oracle and hypothesis strategies for testing diffusion samplers.

``check_sampler`` decides whether a sampler loop (yours, or a library's through an adapter such as
``lindiff.adapters.diffusers``) has the output law that lindiff computes exactly for a linear eps-model
on Gaussian data; ``probe_affine`` recovers the affine map of any black-box step.  The hypothesis
strategies live in :mod:`lindiff.testing.strategies` (imported on first use; needs ``hypothesis``).
"""

from .oracle import AffineProbe, NonAffineError, OracleResult, check_sampler, probe_affine, probe_loop, roundoff_tolerance

__all__ = ["AffineProbe", "NonAffineError", "OracleResult", "check_sampler", "probe_affine", "probe_loop", "roundoff_tolerance",
           "strategies"]


def __getattr__(name):
    if name == "strategies":
        import importlib

        return importlib.import_module(f"{__name__}.strategies")
    raise AttributeError(name)
