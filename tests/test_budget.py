"""models/budget.py: epochs from a time budget."""
import json

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


def _plan(epochs=10, spe=2.0, fixed=5.0, jobs=5, safety=0.9, after=30.0):
    """A plan as epochs_for_budget makes it for a budget that buys exactly ``epochs``."""
    budget_s = after + jobs * (fixed + epochs * spe) / safety
    plan = budget.epochs_for_budget(budget_s, train_images=int(spe * 100), train_rate=100.0,
                                    jobs=jobs, after_s=after, job_overhead_s=fixed,
                                    safety=safety)
    assert plan["epochs"] == epochs and plan["per_job_fixed_s"] == fixed
    return dict(plan, planned_at=1000.0)


def _run_jobs(plan, seconds_per_job_at_plan):
    """Replay the jobs of ``plan`` sequentially, the k-th running its epochs at the pace
    ``seconds_per_job_at_plan[k]`` x the planned seconds; returns each job's epochs and the
    clock at the end."""
    fixed, spe = plan["per_job_fixed_s"], plan["seconds_per_epoch"]
    now, done, last = plan["planned_at"] + 1.0, [], None
    for pace in seconds_per_job_at_plan:
        e = budget.replan_epochs(plan, done, last, now=now)
        done.append(e)
        last, now = now, now + pace * (fixed + e * spe)
    return done, now


def test_replan_keeps_the_plan_on_a_steady_machine():
    plan = _plan()
    # on the plan's pace, and up to the pace its safety share absorbs, nothing changes
    for pace in (1.0, 0.7, 1.05):
        done, _ = _run_jobs(plan, [pace] * 5)
        assert done == [10] * 5, pace
    assert budget.replan_epochs(plan, [], now=5000.0) == 10  # the first job: the plan


def test_replan_cuts_later_jobs_when_the_machine_slows_and_the_budget_holds():
    plan = _plan()
    end_of_jobs = plan["planned_at"] + plan["budget_s"] - plan["after_s"]
    slow = [1.0, 1.3, 1.3, 1.3, 1.3]
    done, end = _run_jobs(plan, slow)
    # the slow second job is seen before the third starts; each later job is cut
    assert done[:2] == [10, 10] and max(done[2:]) < 10 and min(done) >= 5
    assert end <= end_of_jobs + 1e-6
    # without re-planning the same slowdown overruns the jobs' share of the budget
    fixed, spe = plan["per_job_fixed_s"], plan["seconds_per_epoch"]
    unplanned_end = plan["planned_at"] + 1.0 + sum(p * (fixed + 10 * spe) for p in slow)
    assert unplanned_end > end_of_jobs


def test_replan_never_below_the_floor_nor_above_the_plan():
    plan = _plan()
    # far behind: the floor (half the planned epochs, rounded up)
    t0 = plan["planned_at"]
    assert budget.replan_epochs(plan, [10, 10], t0 + 3600, now=t0 + 2 * 3600) == 5
    assert budget.replan_epochs(dict(plan, epochs=9), [9], t0, now=1e9) == 5
    # far ahead: the plan, not more
    assert budget.replan_epochs(plan, [10, 10], t0 + 2.0, now=t0 + 3.0) == 10
    with pytest.raises(ValueError, match="5 job"):
        budget.replan_epochs(plan, [10] * 5, t0, now=2000.0)


def test_replanner_records_each_job_once(monkeypatch):
    plan = _plan()
    records = []
    clock = iter([1001.0, 1001.0 + 25 * 1.5, 1001.0 + 25 * 3.0])
    monkeypatch.setattr(budget.time, "time", lambda: next(clock))
    replan = budget.JobReplanner(plan, lambda q: records.append(dict(q["job_epochs"])))
    first = replan("set0_fold0")
    second = replan("set0_fold1")
    assert first == 10 and second <= 10
    assert replan("set0_fold0") == 10  # asked again: the recorded count, no new record
    assert records == [{"set0_fold0": 10}, {"set0_fold0": 10, "set0_fold1": second}]
    assert plan["job_started_at"] == {"set0_fold0": 1001.0, "set0_fold1": 1001.0 + 25 * 1.5}
    assert budget.job_epochs(plan, "set0_fold1") == second
    assert budget.job_epochs(plan, "set0_fold4") == 10


def test_epochs_within_keeps_a_steady_plan_and_cuts_a_slow_one():
    # 10 epochs planned, 4 run, 60 s left: at 10 s an epoch the plan holds
    assert budget.epochs_within(deadline=160.0, now=100.0, epochs_done=4, epochs=10,
                                last_epoch_s=10.0) == 10
    # at 15 s an epoch only 4 more fit: 8 in all
    assert budget.epochs_within(160.0, 100.0, 4, 10, 15.0) == 8
    # 59 s left at 15 s an epoch: 3 more (floor), never rounded up past the deadline
    assert budget.epochs_within(159.0, 100.0, 4, 10, 15.0) == 7


def _drive_cut(epoch_seconds, window, deadline=110.0):
    """Run ``cut_to_deadline`` as ``models.epochs.fit`` does over epochs of the given wall
    seconds (a simulated clock); returns the epochs trained, the end time and the cuts."""
    clock, cuts, done = [0.0], [], [0]
    replan = budget.cut_to_deadline(deadline, lambda new: cuts.append((done[0], new)), "job",
                                    {"epochs": 100, "seconds_per_epoch": 1.0}, window,
                                    clock=lambda: clock[0])
    total = 100
    while done[0] < total:
        clock[0] += epoch_seconds[done[0]]
        done[0] += 1
        total = replan(done[0], total, epoch_seconds[done[0] - 1])
    return total, clock[0], cuts


def test_cut_to_deadline_ignores_a_slow_epoch_and_cuts_a_lasting_slowdown():
    """100 planned epochs of 1 s, 110 s to the deadline. One epoch of 3 s fits the slack: a
    window of 10 epochs keeps the plan where the last epoch alone would cut 30 epochs. A
    slowdown to 1.5 s from epoch 50 on is cut once it fills half the window, and the run
    ends by the deadline; epochs of 5 s from the start are cut only after the window."""
    spike = [1.0] * 100
    spike[50] = 3.0
    assert _drive_cut(spike, 10) == (100, 102.0, [])
    total, end, cuts = _drive_cut(spike, 1)
    assert total == 70 and cuts == [(51, 70)]
    slow = [1.0] * 50 + [1.5] * 50
    total, end, cuts = _drive_cut(slow, 10)
    assert cuts[0][0] == 55 and cuts[-1][1] == total == 90 and end <= 110.0
    total, end, cuts = _drive_cut(slow, 101)  # a window longer than the run: never cut
    assert (total, cuts) == (100, [])
    total, end, cuts = _drive_cut([5.0] * 100, 10)
    assert cuts[0][0] == 10 and end <= 110.0


def test_epochs_within_never_below_the_epochs_run_nor_above_the_plan():
    assert budget.epochs_within(100.0, 130.0, 4, 10, 10.0) == 4   # past the deadline: stop
    assert budget.epochs_within(1e9, 0.0, 4, 10, 10.0) == 10      # plenty of time: no rise
    assert budget.epochs_within(100.0, 0.0, 10, 10, 10.0) == 10   # done: unchanged
    assert budget.epochs_within(100.0, 0.0, 3, 10, 0.0) == 10     # an instant epoch


def _run_jobs_cut(plan, paces, monkeypatch, cut=True):
    """Sequential jobs of ``plan`` as train_yolo3 runs them under a budget: each re-planned
    before it starts (``JobReplanner``) and, with ``cut``, cut inside itself by the deadline
    its replanner set (``cut_job``, as train_yolo3 cuts a fold). Job k runs ``paces[k]`` x the planned seconds. Returns each job's epochs,
    each job's end and deadline, and the clock at the end."""
    clock = [plan["planned_at"] + 1.0]
    monkeypatch.setattr(budget.time, "time", lambda: clock[0])
    replan = budget.JobReplanner(plan, lambda q: None)
    fixed, spe = plan["per_job_fixed_s"], plan["seconds_per_epoch"]
    epochs, ends, deadlines = [], [], []
    for k, pace in enumerate(paces):
        name = f"set0_fold{k}"
        total = replan(name)
        deadlines.append(replan.deadlines[name])
        step = budget.cut_job(replan.deadlines[name], lambda new, n=name: replan.cut_in_job(
            n, new), name, plan, total, clock=lambda: clock[0]) if cut else None
        clock[0] += pace * fixed
        done = 0
        while done < total:
            clock[0] += pace * spe
            done += 1
            total = step(done, total, pace * spe) if step else total
        epochs.append(done)
        ends.append(clock[0])
    return epochs, ends, deadlines, clock[0]


def test_a_slow_job_is_cut_inside_itself_so_the_last_job_does_not_pay_for_it(monkeypatch):
    """Five jobs of 20 planned epochs; the machine slows by a third from the second job on and
    by 60 % in the fourth (a demo's folds once trained 64, 55, 43, 41 and 32 epochs so). Re-
    planned between jobs only, each job's debt falls on the jobs after it and the last trains
    the fewest epochs; cut inside itself by its share of the time left, each pays its own: the
    fastest job after the slowdown is not the one squeezed, the spread of the counts is
    smaller, every job ends by its deadline and all of them by the plan's."""
    plan = _plan(epochs=20, spe=1.0, fixed=2.0)
    paces = [1.0, 1.35, 1.35, 1.6, 1.0]
    before, _, _, end_before = _run_jobs_cut(dict(plan), paces, monkeypatch, cut=False)
    after, ends, deadlines, end_after = _run_jobs_cut(dict(plan), paces, monkeypatch)
    assert before[0] == 20 and before[-1] == min(before)  # the last job pays for the others
    assert after[-1] > before[-1] and after[-1] > after[3]
    assert max(after) - min(after) < max(before) - min(before)
    assert all(e <= d + 1e-6 for e, d in zip(ends, deadlines))
    assert end_after <= budget.plan_deadline(plan) + 1e-6
    assert min(after) >= 10  # the floor: half the planned epochs
    # a steady machine: nothing is cut, every job trains the plan's epochs
    steady, _, _, _ = _run_jobs_cut(dict(plan), [1.0] * 5, monkeypatch)
    assert steady == [20] * 5


def test_job_deadlines_share_the_time_left_equally():
    plan = _plan()
    end = budget.plan_deadline(plan)
    assert budget.job_deadline(plan, 0, 1000.0) == pytest.approx(1000.0 + (end - 1000.0) / 5)
    assert budget.job_deadline(plan, 4, 1200.0) == pytest.approx(end)  # the last: the rest
    with pytest.raises(ValueError, match="5 job"):
        budget.job_deadline(plan, 5, 1200.0)


def test_replanner_takes_back_a_job_childs_cut_before_planning_and_recording(monkeypatch):
    """A job child cuts its job in a replanner of its own over the record; the parent's
    replanner reads it back (``reload``) before the next job: the pace is read against the
    epochs trained, and the parent's next record keeps the child's cut."""
    plan = _plan()
    stored = {}
    slow_end = 1001.0 + 1.5 * (5.0 + 6 * 2.0)  # the first job: cut to 6 epochs at 1.5x
    clock = [1001.0]  # (logging reads time.time too)
    monkeypatch.setattr(budget.time, "time", lambda: clock[0])
    parent = budget.JobReplanner(plan, lambda q: stored.update(json_copy(q)),
                                 reload=lambda: json_copy(stored))
    assert parent("set0_fold0") == 10
    child = budget.JobReplanner(json_copy(stored), lambda q: stored.update(json_copy(q)))
    child.cut_in_job("set0_fold0", 6)
    clock[0] = slow_end
    second = parent("set0_fold1")
    # read against the 10 epochs it started with, the slow job would look on time
    assert budget.replan_epochs(plan, [10], 1001.0, now=slow_end) == 10 > second
    assert stored["job_epochs"] == {"set0_fold0": 6, "set0_fold1": second}
    assert stored["cut_in_job"] == {"set0_fold0": {"from": 10, "to": 6}}


def json_copy(d):
    return json.loads(json.dumps(d))


def test_raised_epochs_are_the_plan_at_the_measured_pace():
    """A first job's raise re-does the plan's arithmetic with its measured training seconds
    per epoch: the count a calibration that read the true rate would have bought."""
    args = dict(budget_s=900.0, train_images=200, val_images=50, predict_rate=40.0,
                val_interval=5, jobs=5, after_s=30.0, job_overhead_s=3.0)
    under_read = budget.epochs_for_budget(train_rate=25.0, **args)
    true = budget.epochs_for_budget(train_rate=60.0, **args)
    epochs, per_epoch = budget.raised_epochs(under_read, 200 / 60.0)
    assert (epochs, per_epoch) == (true["epochs"], pytest.approx(true["seconds_per_epoch"]))
    assert epochs > 2 * under_read["epochs"]
    # read at the calibrated pace, the plan stands
    assert budget.raised_epochs(under_read, 200 / 25.0)[0] == under_read["epochs"]


def _run_first_raised(plan, epoch_s, monkeypatch):
    """The jobs of ``plan`` as train_yolo3 runs them, the first through
    ``first_job_replan`` (its cut from ``cut_job``), every epoch taking ``epoch_s``; returns
    each job's epochs, the clock at the end, the raises seen and the record."""
    clock = [plan["planned_at"] + 1.0]
    monkeypatch.setattr(budget.time, "time", lambda: clock[0])
    stored, raises = {}, []
    replan = budget.JobReplanner(plan, lambda q: stored.update(json_copy(q)))
    epochs = []
    for k in range(plan["jobs"]):
        name = f"set0_fold{k}"
        total = replan(name)

        def make_cut(e, n=name):
            return budget.cut_job(replan.deadlines[n], lambda new: replan.cut_in_job(n, new),
                                  n, plan, e, clock=lambda: clock[0])
        step = budget.first_job_replan(
            plan, total, lambda new, spe, n=name: (raises.append(new),
                                                  replan.raise_in_job(n, new, spe)),
            make_cut, name) if k == 0 else make_cut(total)
        clock[0] += plan["per_job_fixed_s"]
        done = 0
        while done < total:
            clock[0] += epoch_s
            done += 1
            total = step(done, total, epoch_s)
        epochs.append(done)
    return epochs, clock[0], raises, stored


def test_a_first_job_raises_a_plan_that_under_read_the_machine(monkeypatch):
    """A calibration taken in a slow moment (a demo's read 28.5 images/s where its folds
    then trained at 56-61) plans too few epochs, and a plan that is only ever cut leaves
    the rest of the budget unused. The first job's first epochs raise it: every job trains
    the raised count, and they end inside the budget, using most of it. A calibration that
    read the pace, or one within RAISE_MIN of it, keeps its plan."""
    plan = _plan(epochs=10, spe=2.0, fixed=5.0)  # jobs' training: 5 x (5 + 10 x 2) s
    true_s = 2.0 / 2.3
    epochs, end, raises, stored = _run_first_raised(dict(plan), true_s, monkeypatch)
    expected = budget.raised_epochs(plan, true_s)[0]
    assert expected >= 2 * plan["epochs"]
    assert raises == [expected] and epochs == [expected] * plan["jobs"]
    assert end <= budget.plan_deadline(plan)
    used = (end - plan["planned_at"]) / (budget.plan_deadline(plan) - plan["planned_at"])
    assert used > 0.8
    assert stored["raised_in_job"]["job"] == "set0_fold0"
    assert stored["raised_in_job"]["from"] == plan["epochs"]
    assert stored["epochs"] == expected and stored["job_epochs"]["set0_fold4"] == expected
    # the same plan run without the raise ends early, at a fraction of the budget
    before, end_before = _run_jobs(dict(plan), [1 / 2.3] * plan["jobs"])
    assert before == [plan["epochs"]] * plan["jobs"]
    assert (end_before - plan["planned_at"]) < 0.5 * (end - plan["planned_at"])
    for pace in (1.0, 1.0 / (0.99 * budget.RAISE_MIN)):  # the plan's pace; not quite enough
        steady, _, raises, _ = _run_first_raised(dict(plan), 2.0 * pace, monkeypatch)
        assert raises == [] and steady == [plan["epochs"]] * plan["jobs"]


def test_replanner_takes_back_a_job_childs_raise_and_its_cut(monkeypatch):
    """A first fold run as a job child raises the plan in the record; the parent's
    replanner adopts the raised count and pace before the next job (the child's count wins
    over the parent's lower one), and a cut after the raise is the child's too."""
    plan = _plan()
    stored = {}
    clock = [1001.0]
    monkeypatch.setattr(budget.time, "time", lambda: clock[0])
    parent = budget.JobReplanner(plan, lambda q: stored.update(json_copy(q)),
                                 reload=lambda: json_copy(stored))
    assert parent("set0_fold0") == 10
    child = budget.JobReplanner(json_copy(stored), lambda q: stored.update(json_copy(q)))
    child.raise_in_job("set0_fold0", 25, 0.8)
    child.cut_in_job("set0_fold0", 24)
    clock[0] = 1001.0 + 5.0 + 24 * 0.8
    assert parent("set0_fold1") == 25
    assert stored["epochs"] == 25 and stored["seconds_per_epoch"] == 0.8
    assert stored["job_epochs"] == {"set0_fold0": 24, "set0_fold1": 25}
    assert stored["raised_in_job"] == {"job": "set0_fold0", "from": 10, "to": 25,
                                       "calibrated_seconds_per_epoch": 2.0,
                                       "seconds_per_epoch": 0.8}
    assert stored["cut_in_job"] == {"set0_fold0": {"from": 25, "to": 24}}
