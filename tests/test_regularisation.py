import numpy as np
import pytest

import lindiff as ld
from lindiff.regularisation import best_ridge, best_train_time, decay_table, evaluate, regularisation_table


@pytest.fixture(scope="module")
def setting():
    return ld.Gaussian.from_spectrum(ld.spectra.power_law(12, 1.0)), ld.DDPM.linear(200)


def test_ridge_and_early_stopping_help_below_d(setting):
    p0, process = setting
    none = evaluate(p0, 6, process, repeats=4)
    ridge = evaluate(p0, 6, process, ridge=0.1, repeats=4)
    early = evaluate(p0, 6, process, train_time=10.0, repeats=4)
    for m in (ridge, early):
        assert m["test_loss"][0] < none["test_loss"][0] / 3
        assert m["kl_data_to_model"][0] < none["kl_data_to_model"][0] / 10
    # above d the unregularised fit is near-optimal and a large ridge costs
    big = evaluate(p0, 120, process, repeats=4)
    big_ridge = evaluate(p0, 120, process, ridge=1.0, repeats=4)
    assert big["test_loss"][0] < big_ridge["test_loss"][0]


def test_best_ridge_is_interior_and_beats_neighbours(setting):
    p0, process = setting
    r, value = best_ridge(p0, 6, process, repeats=4, bounds=(1e-5, 10.0))
    assert 1e-5 < r < 10.0
    for other in (r / 3, r * 3):
        assert evaluate(p0, 6, process, ridge=other, repeats=4)["test_loss"][0] >= value - 1e-12
    tau, v2 = best_train_time(p0, 6, process, repeats=4)
    assert v2 < evaluate(p0, 6, process, repeats=4)["test_loss"][0]
    with pytest.raises(ValueError, match="criterion"):
        best_ridge(p0, 6, process, criterion="w2")


def test_strong_decay_overfits_less(setting):
    _, process = setting
    table = decay_table(12, 6, process, exponents=(0.0, 1.0, 3.0), repeats=4)
    gaps = [row[2][0] for row in table.rows]
    assert gaps[0] > gaps[1] > gaps[2]


def test_regularisation_table_renders(setting):
    p0, process = setting
    table = regularisation_table(p0, 6, process, ridges=(0.1,), train_times=(5.0,), repeats=3)
    assert len(table.rows) == 3 and "ridge 0.1" in table.render("markdown")


def test_infinite_kls_keep_their_reason():
    """Issue 11: a data law of rank 0 against the (full-rank) sampled law has KL = inf; ``float(np.mean(...))``
    turned the Infinite into a plain inf.  The mean over sets keeps it, with its reason."""
    p0 = ld.Gaussian.from_spectrum([0.0])
    one = evaluate(p0, 1, ld.DDPM.linear(2), repeats=1)
    for key in ("kl_data_to_model", "kl_model_to_data"):
        assert isinstance(one[key], ld.Infinite) and "singular" in one[key].reason
    many = evaluate(ld.Gaussian.from_spectrum([0.0, 1.0]), 3, ld.DDPM.linear(2), repeats=3)
    assert isinstance(many["kl_data_to_model"], ld.Infinite) and isinstance(many["test_loss"], tuple)
    table = regularisation_table(p0, 2, ld.DDPM.linear(5), ridges=(0.1,), train_times=(1.0,), repeats=2)
    assert all(isinstance(v, ld.Infinite) and v.reason for v in table.column("KL(data||law)"))
    ridge, value = best_ridge(p0, 2, ld.DDPM.linear(2), criterion="kl_data_to_model", repeats=2)
    assert isinstance(value, ld.Infinite) and "every ridge" in value.reason  # not the sentinel 1e300
