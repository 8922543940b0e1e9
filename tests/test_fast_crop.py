"""datasets/detector/fast_crop.py against GluonCV's random_crop_with_constraints: same crops, same
boxes, and the random generators left in the same state, on random boxes and image sizes."""
import random

import numpy as np
import pytest
from gluoncv.data.transforms.experimental.bbox import random_crop_with_constraints as gluon_crop

from datasets.detector.fast_crop import random_crop_with_constraints as fast_crop


def _case(rng):
    w, h = int(rng.randint(40, 700)), int(rng.randint(40, 700))
    n = int(rng.choice([0, 1, 2, 3, 5, 12]))
    xy = rng.uniform(-10, [w, h], (n, 2))
    wh = rng.uniform(1, [w / 2, h / 2], (n, 2))
    bbox = np.c_[xy, xy + wh, rng.randint(0, 3, (n, 1)), rng.randint(0, 2, (n, 1))]
    return bbox.astype(rng.choice([np.float32, np.float64])), (w, h)


@pytest.mark.parametrize("seed", range(300))
def test_same_result_and_same_generator_state(seed):
    rng = np.random.RandomState(seed)
    bbox, size = _case(rng)
    outs = []
    for fn in (gluon_crop, fast_crop):
        random.seed(seed)
        np.random.seed(seed)
        out = fn(bbox.copy(), size)
        outs.append((out, random.random(), np.random.random_sample()))
    (b_g, c_g), *after_g = outs[0]
    (b_f, c_f), *after_f = outs[1]
    assert c_f == c_g, f"seed {seed}"
    np.testing.assert_array_equal(b_f, b_g, err_msg=f"seed {seed}")
    assert after_f == after_g, f"seed {seed}: generators left in another state"


def test_other_constraints_and_trials():
    rng = np.random.RandomState(5)
    for k in range(50):
        bbox, size = _case(rng)
        kw = dict(constraints=((0.5, 0.9), (None, 0.3)), max_trial=7, min_scale=0.5)
        random.seed(k)
        np.random.seed(k)
        want = gluon_crop(bbox.copy(), size, **kw)
        random.seed(k)
        np.random.seed(k)
        got = fast_crop(bbox.copy(), size, **kw)
        assert got[1] == want[1]
        np.testing.assert_array_equal(got[0], want[0])
