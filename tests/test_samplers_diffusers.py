"""The samplers of lindiff._samplers_diffusers (UniPC, DEIS, DPM-Solver singlestep, PNDM, LCM, TCD):
eigenbasis and dense paths agree, the Monte Carlo twin (mc.sample on the same program) agrees with
the exact law by z-scores, the coefficient table prints, bad options are refused."""

import numpy as np
import pytest

import lindiff as ld
from lindiff import mc

SV = ld.SigmaVP(14.6)
GRID = np.r_[np.geomspace(14.6, 0.03, 9), 0.0]
DDPM = ld.DDPM.linear(1000)
TS = np.r_[981, 801, 601, 401, 201, 101, 41, 21, 0].astype(float)
CASES = [
    ("unipc", SV, GRID, {}),
    ("unipc", SV, GRID, {"solver_order": 3, "solver_type": "bh1"}),
    ("unipc", SV, GRID, {"predict_x0": False, "corrector": False}),
    ("deis", SV, GRID[:-1], {"solver_order": 3}),
    ("dpmsolver_singlestep", SV, GRID, {"solver_order": 3, "solver_type": "heun"}),
    ("dpmsolver_singlestep", SV, GRID, {"algorithm_type": "sde-dpmsolver++"}),
    ("dpmsolver_singlestep", SV, GRID[:-1], {"algorithm_type": "dpmsolver", "orders": (1, 2, 1, 2, 1, 2, 1, 2)}),
    ("pndm", DDPM, TS, {}),
    ("pndm", DDPM, TS, {"warmup": "heun"}),
    ("pndm", ld.VP.linear(), np.linspace(1.0, 1e-3, 12), {}),
    ("lcm", DDPM, TS, {}),
    ("tcd", DDPM, np.r_[TS[:-1], 1.0], {"gamma": 0.3}),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def _model(process, seed=0):
    gen = np.random.default_rng(seed)
    p0 = ld.Gaussian.from_spectrum([2.0, 0.6, 0.05], ld.spectra.random_basis(3, gen), [0.5, -0.2, 1.0])
    return ld.LinearDenoiser.fit(p0.sample(8, gen), process)


@pytest.mark.parametrize("name,process,grid,opts", CASES, ids=IDS)
def test_spectral_and_dense_paths_agree(name, process, grid, opts):
    model = _model(process)
    a = ld.sampling_law(model, process, name, grid=grid, path="spectral", **opts)
    b = ld.sampling_law(model, process, name, grid=grid, path="dense", **opts)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,process,grid,opts", CASES, ids=IDS)
def test_exact_law_is_the_law_of_the_monte_carlo_twin(name, process, grid, opts):
    model = _model(process, 1)
    law = ld.sampling_law(model, process, name, grid=grid, **opts)
    x = mc.sample(model, process, name, 6000, 0, grid=grid, **opts)
    z = mc.moment_z_scores(x, law)
    assert np.max(np.abs(z)) < mc.max_abs_z_threshold(z.size, 1e-4)


@pytest.mark.parametrize("name,process,grid,opts", CASES[:1] + CASES[4:5] + CASES[7:8] + CASES[10:], ids=lambda v: str(v)[:12])
def test_coefficient_table(name, process, grid, opts):
    table = ld.sampler_table(process, name, grid=grid, **opts)
    assert len(table.rows) >= len(grid) - 1 and name in table.caption
    assert table.render("markdown")


def test_bad_options_are_refused_with_reasons():
    with pytest.raises(ValueError, match="solver_type"):
        ld.build_sampler(SV, "unipc", grid=GRID, solver_type="bh3")
    with pytest.raises(ValueError, match="lower_order_final"):
        ld.build_sampler(SV, "unipc", grid=GRID, lower_order_final=False)  # order 2 onto sigma = 0
    with pytest.raises(ValueError, match="warmup"):
        ld.build_sampler(DDPM, "pndm", grid=TS, warmup="rk4")
    with pytest.raises(ValueError, match="DDPM"):
        ld.build_sampler(SV, "lcm", grid=GRID)
    with pytest.raises(ValueError, match="gamma"):
        ld.build_sampler(DDPM, "tcd", grid=TS, gamma=1.5)
    with pytest.raises(ValueError, match="entries"):
        ld.build_sampler(SV, "dpmsolver_singlestep", grid=GRID, orders=(1, 2))
    with pytest.raises(ValueError, match="sigma = 0"):
        ld.build_sampler(SV, "dpmsolver_singlestep", grid=GRID, algorithm_type="dpmsolver")
    with pytest.raises(TypeError, match="unexpected keyword"):
        ld.build_sampler(SV, "deis", grid=GRID, eta=1.0)


def test_first_order_members_reduce_to_ddim():
    """UniPC-1 without corrector, DEIS-1, singlestep order 1 and PNDM's transfer are the DDIM step."""
    model = _model(SV, 2)
    ref = ld.sampling_law(model, SV, "dpmsolver_multistep", grid=GRID, solver_order=1)
    for name, opts in [("unipc", {"solver_order": 1, "corrector": False}), ("deis", {"solver_order": 1}),
                       ("dpmsolver_singlestep", {"solver_order": 1})]:
        law = ld.sampling_law(model, SV, name, grid=GRID if name != "deis" else GRID, **opts) if name != "deis" \
            else ld.sampling_law(model, SV, name, grid=GRID[:-1], **opts)
        ref_g = ref if name != "deis" else ld.sampling_law(model, SV, "dpmsolver_multistep", grid=GRID[:-1], solver_order=1)
        np.testing.assert_allclose(law.cov, ref_g.cov, rtol=1e-11, atol=1e-13)
