import numpy as np

from reachability.compute import compute_kernel
from reachability.problems import get_problem


def test_air3d_small_grid_kernel_shrinks_with_horizon() -> None:
    problem = get_problem("air3d")
    short = compute_kernel(problem, (21, 20, 16), horizon=0.5, accuracy="medium")
    long = compute_kernel(problem, (21, 20, 16), horizon=1.0, accuracy="medium")
    limit = problem.constraint(short.grid.states)
    assert np.all(short.value <= limit + 1e-12)
    # the longer horizon keeps a subset of the shorter one's kernel (up to a few cells of discretisation)
    assert ((long.value >= 0) & (short.value < 0)).mean() < 0.005
    # heading straight at each other from 10 m ahead is unavoidable within a second
    assert long.grid.interpolate(long.value, np.array([[10.0, 0.0, np.pi]]))[0] < 0
    assert (long.value >= 0).sum() < (limit >= 0).sum()
