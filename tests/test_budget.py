"""models/budget.py: epochs from a time budget."""
import pytest

from models import budget


def test_epochs_fill_the_budget_and_no_more():
    plan = budget.epochs_for_budget(600, train_images=200, train_rate=10.0, val_images=40,
                                    predict_rate=40.0, val_interval=2, jobs=5, after_s=30,
                                    job_overhead_s=2, safety=1.0)
    per_epoch = 200 / 10 + (40 / 40) / 2
    per_job_fixed = 2 + 1
    e = plan["epochs"]
    assert plan["seconds_per_epoch"] == pytest.approx(per_epoch)
    assert 30 + 5 * (per_job_fixed + e * per_epoch) <= 600
    assert 30 + 5 * (per_job_fixed + (e + 1) * per_epoch) > 600
    assert plan["planned_s"] == pytest.approx(30 + 5 * (per_job_fixed + e * per_epoch))


def test_safety_leaves_room():
    loose = budget.epochs_for_budget(1000, 100, 10.0, safety=1.0)["epochs"]
    safe = budget.epochs_for_budget(1000, 100, 10.0, safety=0.8)["epochs"]
    assert safe == int(0.8 * 1000 / 10) < loose == 100


def test_too_small_a_budget_says_what_would_do():
    with pytest.raises(ValueError, match=r"buys 0 epoch\(s\).*at least"):
        budget.epochs_for_budget(10, train_images=1000, train_rate=5.0, jobs=5)
