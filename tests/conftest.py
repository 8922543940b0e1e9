"""Fixtures shared by several test files, built once per test run from fixed seeds.

Session-scoped data is read-only for the tests that use it: a test that changes its data
builds its own folder (``tests.yolo_fixtures.make_detection_data``, ``tests.filter_fixtures``).
"""
import pytest

from tests.yolo_fixtures import make_detection_data

#: The detector tests' prepared folder: 12 speckle images with 1-3 dark lesions each, 4 test
#: ids, 8 training ids in 2 folds.
TINY_DETECTION = dict(n=12, n_test=4, k=2, seed=0)


@pytest.fixture(scope="session")
def tiny_detection_data(tmp_path_factory):
    """``(DATA path, splits dict)`` of :data:`TINY_DETECTION` (docs/CONTRACTS.md layout:
    JPEGImages, records/all.rec, manifest.csv, splits.json), used by train_yolo3, find_lr,
    bench_learning and the dist kvstore tests."""
    return make_detection_data(tmp_path_factory.mktemp("tiny_detection"), **TINY_DETECTION)
