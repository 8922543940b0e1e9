"""The CV grid parser (models/grid.py) and train_yolo3's option handling, without training."""
import itertools
import json

import pytest

import train_yolo3
from models import grid, jobs


@pytest.fixture(scope="module")
def types():
    return grid.grid_types(train_yolo3.build_parser(), train_yolo3.GRID_KEYS)


def test_string_grid_is_the_cartesian_product_in_written_order(types):
    sets = grid.parse_grid("lr=1e-3,5e-4;epochs=30,60;lr_mode=cosine,triangular", types)
    want = [dict(lr=a, epochs=b, lr_mode=c) for a, b, c in
            itertools.product([1e-3, 5e-4], [30, 60], ["cosine", "triangular"])]
    assert sets == want
    assert all(isinstance(s["epochs"], int) and isinstance(s["lr"], float) for s in sets)


def test_dashes_and_spaces_are_accepted(types):
    assert grid.parse_grid(" lr-mode = step ; batch-size=4 ", types) == [
        {"lr_mode": "step", "batch_size": 4}]


def test_unknown_key_is_refused_with_the_valid_keys(types):
    with pytest.raises(ValueError) as e:
        grid.parse_grid("lr=1e-3;learning_rate=2", types)
    msg = str(e.value)
    assert "learning_rate" in msg and "valid keys" in msg
    for key in ("lr", "epochs", "lr_mode", "batch_size"):
        assert key in msg


@pytest.mark.parametrize("spec, fragment", [
    ("lr=abc", "lr='abc'"),
    ("epochs=2.5", "epochs"),
    ("lr_mode=bogus", "cosine"),          # choices listed
    ("lr=1e-3;lr=2e-3", "twice"),
    ("lr=", "empty value"),
    ("lr 1e-3", "no '='"),
    ("lr=1e-3,,2e-3", "empty value"),
])
def test_bad_grids_say_what_is_wrong(types, spec, fragment):
    with pytest.raises(ValueError, match=None) as e:
        grid.parse_grid(spec, types)
    assert fragment in str(e.value)


def test_list_valued_option_uses_slashes_in_the_string_form(types):
    sets = grid.parse_grid("lr_mode=multistep;lr_steps=20/25,30/40", types)
    assert [s["lr_steps"] for s in sets] == ["20,25", "30,40"]


def test_json_object_of_lists_equals_the_string_form(types, tmp_path):
    text = json.dumps({"lr": [1e-3, 5e-4], "epochs": [30, 60]})
    path = tmp_path / "grid.json"
    path.write_text(text)
    from_string = grid.parse_grid("lr=1e-3,5e-4;epochs=30,60", types)
    assert grid.parse_grid(text, types) == from_string
    assert grid.parse_grid(str(path), types) == from_string


def test_json_list_of_sets_is_taken_as_written(types):
    spec = json.dumps([{"lr": 1e-3, "epochs": 30},
                       {"lr": 5e-4, "lr-mode": "step", "lr_steps": [20]}])
    assert grid.parse_grid(spec, types) == [
        {"lr": 1e-3, "epochs": 30}, {"lr": 5e-4, "lr_mode": "step", "lr_steps": "20"}]


def test_json_errors(types, tmp_path):
    with pytest.raises(ValueError, match="unknown key 'foo'"):
        grid.parse_grid('[{"foo": 1}]', types)
    with pytest.raises(ValueError, match="integer"):
        grid.parse_grid('{"epochs": [2.5]}', types)
    with pytest.raises(FileNotFoundError):
        grid.parse_grid(str(tmp_path / "missing.json"), types)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        grid.parse_grid(str(bad), types)


def test_no_grid_is_one_set_of_command_line_values(types):
    assert grid.parse_grid(None, types) == [{}]
    assert grid.parse_grid("", types) == [{}]


def test_boolean_switches(types):
    # --random-shape/--no-random-shape (unset: the recipe's) as a grid key
    sets = grid.parse_grid("random_shape=true,false;prior_init=0", types)
    assert sets == [{"random_shape": True, "prior_init": False},
                    {"random_shape": False, "prior_init": False}]
    with pytest.raises(ValueError, match="true/false"):
        grid.parse_grid("extra_augment=maybe", types)


def test_set_label():
    assert grid.set_label({"lr": 0.001, "epochs": 30}) == "lr=0.001 epochs=30"
    assert grid.set_label({}) == "default"


def test_every_grid_key_reaches_the_job_parameters():
    # A grid key that is not an option would be silently ignored by the trainer.
    args = train_yolo3.parse_args(["--data", "D"])
    for key in train_yolo3.GRID_KEYS:
        assert hasattr(args, key), key


def test_unknown_grid_key_stops_before_any_training(tmp_path):
    args = train_yolo3.parse_args(["--data", str(tmp_path), "--grid", "lrr=1",
                                   "--out", str(tmp_path / "runs")])
    with pytest.raises(ValueError, match="unknown key 'lrr'"):
        train_yolo3.main(args)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("job, want", [("final", "final"), ("1:0", (1, 0))])
def test_parse_job(job, want):
    assert jobs.parse_job(job, 2, 3) == want


@pytest.mark.parametrize("job", ["2:0", "0:3", "x", "1"])
def test_parse_job_rejects(job):
    with pytest.raises(ValueError):
        jobs.parse_job(job, 2, 3)
