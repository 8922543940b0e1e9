"""models/resume.py: a resumed run takes its stored options and refuses conflicting ones,
the same way in both trainers."""
import json

import pytest

import train_filter
import train_yolo3
from models import resume

TRAINERS = [(train_yolo3.build_parser, train_yolo3.FIXED_ON_RESUME),
            (train_filter.build_parser, train_filter._RESUME_FIXED)]


@pytest.mark.parametrize("build_parser, fixed", TRAINERS)
def test_resume_takes_stored_options_and_refuses_conflicts(build_parser, fixed):
    parser = build_parser()
    defaults = vars(parser.parse_args([]))
    stored = dict(defaults, data="DATA", epochs=7, lr=0.01)
    args = parser.parse_args(["--resume", "R"])
    resume.take_stored_options(args, stored, defaults, fixed)
    assert (args.data, args.epochs, args.lr) == ("DATA", 7, 0.01)
    same = parser.parse_args(["--resume", "R", "--epochs", "7", "--gpus", ""])
    assert resume.take_stored_options(same, stored, defaults, fixed).epochs == 7
    with pytest.raises(ValueError, match="--resume R: --epochs 9 conflicts with the run's 7"):
        resume.take_stored_options(parser.parse_args(["--resume", "R", "--epochs", "9"]),
                                   stored, defaults, fixed)


def test_options_outside_the_fixed_list_stay_as_given():
    parser = train_yolo3.build_parser()
    defaults = vars(parser.parse_args([]))
    args = parser.parse_args(["--resume", "R", "--num-workers", "3"])
    resume.take_stored_options(args, dict(defaults, num_workers=0), defaults,
                               train_yolo3.FIXED_ON_RESUME)
    assert args.num_workers == 3


def test_resume_options_reads_args_json(tmp_path):
    parser = train_filter.build_parser()
    options = dict(vars(parser.parse_args([])), data="DATA", epochs=5)
    (tmp_path / "args.json").write_text(json.dumps({"options": options,
                                                    "derived": {"time_budget": {"epochs": 5}}}))
    args = parser.parse_args(["--resume", str(tmp_path)])
    record = resume.resume_options(args, parser, train_filter._RESUME_FIXED)
    assert args.epochs == 5 and record["derived"]["time_budget"] == {"epochs": 5}
    with pytest.raises(FileNotFoundError, match="no args.json"):
        resume.resume_options(parser.parse_args(["--resume", str(tmp_path / "none")]), parser,
                              train_filter._RESUME_FIXED)
