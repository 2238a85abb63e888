"""common.in_the_wild.filters: the optional smoothing of a lifted clip, and --filter / --pose-mode."""
import numpy as np
import pytest

from common.in_the_wild import filters
from common.in_the_wild.filters import Filter

FPS = 50.0


def signal(seconds=4.0, slow_hz=1.0, fast_hz=20.0):
    t = np.arange(int(seconds * FPS)) / FPS
    slow = np.sin(2 * np.pi * slow_hz * t)
    fast = 0.2 * np.sin(2 * np.pi * fast_hz * t)
    shape = (len(t), 17, 3)
    return np.broadcast_to(slow[:, None, None], shape).copy(), np.broadcast_to(fast[:, None, None], shape).copy()


def amplitude(x):
    inside = x[len(x) // 4: -len(x) // 4]
    return float(np.abs(inside).max())


def test_butterworth_removes_a_fast_wobble_and_keeps_the_slow_motion_in_phase():
    slow, fast = signal()
    out = Filter.parse("butterworth:cutoff=6,order=4")(slow + fast, FPS)
    assert amplitude(out - slow) < 0.01 * amplitude(fast)          # 20 Hz: gone
    assert amplitude(out - slow) < 0.003                            # 1 Hz: kept, no lag (zero-phase)


def test_savgol_keeps_a_quadratic_exactly_and_smooths_noise():
    t = np.arange(60, dtype=np.float64)
    quad = np.broadcast_to((0.001 * t ** 2)[:, None, None], (60, 17, 3)).copy()
    np.testing.assert_allclose(Filter.parse("savgol:window=9,order=2")(quad, FPS), quad, atol=1e-5)
    noisy = quad + np.random.default_rng(0).normal(0, 0.01, quad.shape)
    out = Filter.parse("savgol")(noisy, FPS)
    assert np.abs(out - quad).mean() < 0.6 * np.abs(noisy - quad).mean()


def test_one_euro_is_causal_and_smooths_a_still_joint():
    slow, fast = signal()
    x = slow + fast
    f = Filter.parse("one-euro:min_cutoff=1,beta=0.01")
    out = f(x, FPS)
    changed = x.copy()
    changed[100:] += 5.0                                            # the future changes...
    np.testing.assert_array_equal(f(changed, FPS)[:100], out[:100])   # ...the past does not
    still = np.random.default_rng(1).normal(0, 0.01, (200, 17, 3))
    assert np.abs(f(still, FPS)[50:]).mean() < 0.3 * np.abs(still[50:]).mean()


def test_bad_filter_specs_are_refused_with_what_to_write():
    with pytest.raises(ValueError, match="unknown filter 'kalman': choose from butterworth, savgol, one-euro"):
        Filter.parse("kalman")
    with pytest.raises(ValueError, match="'window' is not key=value with a key among cutoff, order"):
        Filter.parse("butterworth:window")
    with pytest.raises(ValueError, match="cutoff='fast' is not a number"):
        Filter.parse("butterworth:cutoff=fast")
    with pytest.raises(ValueError, match="between 0 and half the frame rate"):
        Filter.parse("butterworth:cutoff=30")(np.zeros((40, 17, 3)), FPS)
    with pytest.raises(ValueError, match="odd number of frames"):
        Filter.parse("savgol:window=8")(np.zeros((40, 17, 3)), FPS)
    assert Filter.parse("Butterworth:cutoff=4").describe() == "butterworth(cutoff=4)"


def test_smooth_result_filters_every_pose_and_the_root_and_says_so():
    from test_exports import make_result

    r = make_result(n=40, fps=30.0)
    before = {m: p.copy() for m, p in r.poses.items()}
    traj = r.trajectory.copy()
    filters.smooth_result(r, Filter.parse("savgol:window=5,order=1"))
    for m in before:
        np.testing.assert_allclose(r.poses[m], Filter.parse("savgol:window=5,order=1")(before[m], 30.0), atol=1e-6)
        assert not np.allclose(r.poses[m], before[m])
    np.testing.assert_allclose(r.trajectory, traj, atol=1e-6)       # a straight line stays (order 1)
    assert r.filter == "savgol(window=5, order=1) at 30 fps"
