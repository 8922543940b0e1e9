"""A detection covering the whole half (untrained detectors make them) still gets a crop."""
import numpy as np

from datasets.filter.crops import fusion as crop_fusion


def test_box_filling_the_half_is_compared_in_place():
    rng = np.random.default_rng(0)
    lesion = rng.integers(0, 255, (120, 100), dtype=np.uint8)
    reference = rng.integers(0, 255, (120, 101), dtype=np.uint8)
    search = {"feature": "hog", "distance": None, "context": 0.5, "search_radius": 8,
              "stride": 4}
    crops, matches = crop_fusion.crops_for_detections(
        lesion, reference, [[0, 0, 100, 120], [10, 10, 40, 40]], search, size=32)
    assert crops.shape == (2, 32, 32, 3)
    assert (matches[0].dx, matches[0].dy) == (0, 0) and np.isnan(matches[0].distance)
    assert np.isfinite(matches[1].distance)
