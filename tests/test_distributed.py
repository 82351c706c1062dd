"""The Monte Carlo over training sets runs unchanged on a Dask cluster (extra ``lindiff[distributed]``).

A ``distributed.LocalCluster`` with process workers stands in for a real cluster: the values cross process
boundaries by pickling exactly as they would cross machines, and ``Client.get_executor()`` is the same
``concurrent.futures`` interface either way.  Every result must equal the serial one bit for bit.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.extras
distributed = pytest.importorskip("distributed", reason="the optional extra lindiff[distributed] is not installed")

import lindiff as ld  # noqa: E402
from lindiff import regularisation  # noqa: E402
from structural import same  # noqa: E402


@pytest.fixture(scope="module")
def executor():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        yield client.get_executor()


def test_transition_sweep_on_a_cluster_equals_the_serial_run(executor):
    kwargs = dict(d=5, ratios=[0.8, 1.2, 3.0], repeats=4, seed=11, progress=False)
    assert same(ld.transition_sweep(**kwargs), ld.transition_sweep(executor=executor, **kwargs))


def test_stability_draws_on_a_cluster_equal_the_serial_run(executor):
    p0 = ld.Gaussian.from_spectrum([1.0, 0.5, 0.2])
    kwargs = dict(p0=p0, N=6, process=ld.OU(3.0), times=[0.1, 1.0], repeats=3, draws=2, seed=5, progress=False)
    serial, dask = ld.stability_draws(**kwargs), ld.stability_draws(executor=executor, **kwargs)
    assert serial.keys() == dask.keys()
    for key in serial:
        assert np.array_equal(serial[key], dask[key]), key


def test_regularisation_on_a_cluster_equals_the_serial_run(executor):
    p0 = ld.Gaussian.from_spectrum([1.0, 0.5, 0.2, 0.1])
    process = ld.DDPM.linear(100)
    kwargs = dict(ridges=[0.1], train_times=[5.0], repeats=3, seed=2)
    serial = regularisation.regularisation_table(p0, 3, process, **kwargs)
    assert same(serial, regularisation.regularisation_table(p0, 3, process, executor=executor, **kwargs))
