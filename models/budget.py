"""Training to a wall-clock budget: an epoch count from measured throughput.

CPUs differ fourfold in speed for the same detector (an AVX-512 Xeon against an AVX2-only
EPYC), so a fixed epoch count is not a contract a CPU user can rely on. As Ultralytics'
``time=`` does, ``--time-budget`` turns minutes into epochs: a short calibration measures
the training and prediction rates of this machine, and every job gets the same number of
epochs, chosen so that all of them, their validations and the predictions after training fit
into the budget. The schedule is then built for that many epochs, so the learning rate still
anneals by the end. The first job's first epochs check the calibration, and raise the count
when it under-read the machine (:func:`first_job_replan`); after that a count is only cut,
when the machine slows down. Every count is recorded in the run folder: passing it back as
``--epochs`` reproduces the run on any machine.
"""
import logging
import math
import statistics
import time

import mxnet as mx

log = logging.getLogger(__name__)


def measure_rate(step, batches, warmup=2):
    """Items per second of ``step(batch)`` over an iterator of batches (first ``warmup``
    batches untimed: graph building, MKLDNN primitive creation). ``batches`` yields
    ``(batch, n_items)``."""
    it = iter(batches)
    for _ in range(warmup):
        batch, _ = next(it)
        step(batch)
    mx.nd.waitall()
    t0 = time.perf_counter()
    n = 0
    for batch, items in it:
        step(batch)
        n += items
    mx.nd.waitall()
    return n / max(time.perf_counter() - t0, 1e-9)


def epochs_for_budget(budget_s, train_images, train_rate, val_images=0, predict_rate=None,
                      val_interval=1, jobs=1, after_s=0.0, job_overhead_s=0.0, safety=0.9,
                      min_epochs=1):
    """Epochs per job so that ``jobs`` jobs and the work after them fit in ``budget_s``.

    Parameters
    ----------
    budget_s : float
        Seconds left for the jobs and what follows them.
    train_images : int
        Images one job trains on per epoch (the largest job, if they differ).
    train_rate : float
        Measured training images per second (loader included).
    val_images : int
        Images validated every ``val_interval`` epochs and predicted once after training.
    predict_rate : float, optional
        Measured prediction images per second (needed when ``val_images``).
    jobs : int
        Models to train with this epoch count.
    after_s : float
        Seconds needed after all jobs (test predictions, report); reserved first.
    job_overhead_s : float
        Fixed seconds per job (building the net and the loaders).
    safety : float
        Share of the remaining time planned for (throughput drifts on a shared machine).

    Returns
    -------
    dict
        ``epochs``, ``seconds_per_epoch``, ``planned_s`` (jobs + after) and the inputs.

    Raises
    ------
    ValueError
        The budget does not buy ``min_epochs`` epochs per job; the message gives the budget
        that would.
    """
    if train_rate <= 0:
        raise ValueError(f"measured training rate must be > 0 images/s, got {train_rate}")
    val_s = val_images / predict_rate if val_images else 0.0
    per_epoch = train_images / train_rate + val_s / max(1, val_interval)
    per_job_fixed = job_overhead_s + val_s
    epochs = _epochs_per_job(budget_s, after_s, jobs, per_job_fixed, per_epoch, safety)
    if epochs < min_epochs:
        need = (after_s + jobs * (per_job_fixed + min_epochs * per_epoch) / safety) / 60.0
        raise ValueError(f"--time-budget {budget_s / 60:.1f} min buys {epochs} epoch(s) per job "
                         f"for {jobs} job(s) at {train_rate:.1f} training images/s here "
                         f"({per_epoch:.1f} s per epoch); at least {need:.1f} min is needed "
                         f"for {min_epochs}, or give --epochs")
    planned = after_s + jobs * (per_job_fixed + epochs * per_epoch)
    return {"epochs": epochs, "seconds_per_epoch": per_epoch, "per_job_fixed_s": per_job_fixed,
            "planned_s": planned,
            "budget_s": budget_s, "jobs": jobs, "train_images": train_images,
            "train_images_per_s": train_rate, "val_images": val_images,
            "predict_images_per_s": predict_rate, "after_s": after_s, "safety": safety}


def _epochs_per_job(budget_s, after_s, jobs, per_job_fixed, per_epoch, safety):
    """Epochs of ``per_epoch`` seconds each of ``jobs`` jobs fits in ``safety`` of
    ``budget_s`` less ``after_s``, each job also costing ``per_job_fixed``."""
    available = safety * (budget_s - after_s) / max(1, jobs) - per_job_fixed
    return int(math.floor(available / per_epoch)) if available > 0 else 0


def plan_detector(budget_s, rates, splits, n_cv_jobs, final_only, retrain, val_interval):
    """Epochs per detector job: the CV jobs (unless ``final_only``) and a retrained final
    model (``retrain``) share ``budget_s`` with the test predictions after them.

    Parameters
    ----------
    budget_s : float
        Seconds left.
    rates : dict
        Measured ``train_images_per_s``, ``predict_images_per_s`` and ``job_overhead_s``.
    splits : dict
        ``splits.json``: ``train``, ``test`` and ``folds`` (``train``/``val`` ids).
    n_cv_jobs : int
        Sets x folds.
    final_only, retrain : bool
        Only the final model trains (``--only final``); the final model is retrained (else
        the fold models predict the test split as an ensemble).
    val_interval : int
        Validation every this many epochs.

    Returns
    -------
    dict
        :func:`epochs_for_budget`'s plan.
    """
    folds = splits["folds"]
    n_jobs = (0 if final_only else n_cv_jobs) + int(retrain)
    members = 1 if retrain else len(folds)
    largest = len(splits["train"]) if retrain else max(len(f["train"]) for f in folds)
    val = 0 if final_only else max(len(f["val"]) for f in folds)
    after = members * len(splits["test"]) / rates["predict_images_per_s"] + 5.0
    plan = epochs_for_budget(budget_s, largest, rates["train_images_per_s"], val,
                             rates["predict_images_per_s"], val_interval, n_jobs, after_s=after,
                             job_overhead_s=rates["job_overhead_s"])
    log.info("time budget: %d model(s) x %d epochs (%.1f training images/s, %.1f s per epoch, "
             "%.0f s planned of %.0f s)", n_jobs, plan["epochs"], plan["train_images_per_s"],
             plan["seconds_per_epoch"], plan["planned_s"], budget_s)
    return plan


#: The share of a job's planned epochs whose median pace decides a cut inside the job.
PACE_SHARE = 0.1

#: A re-planned job keeps at least this share of the planned epochs (a fold cut further
#: would score a model of another kind, not a noisier estimate of the same one).
REPLAN_FLOOR = 0.5


def replan_epochs(plan, done_epochs, last_started_at=None, now=None, floor=REPLAN_FLOOR):
    """Epochs for the next job of ``plan`` when the jobs before it trained ``done_epochs``.

    The plan fixes one epoch count from a calibration of a few seconds; a shared machine
    can then slow down for minutes (a demo's folds once ran 15 % under the calibrated rate:
    the detector overran its share by 50 s, and the filter after it got 6 epochs instead of
    11). Before each job after the first, the jobs' time left in the budget is shared again
    among the jobs not yet trained, at the pace the last job kept (its wall clock from its
    start to this one's, process start-up included, against its planned seconds: a slowdown
    that lasts is seen at once, where an average over all jobs would lag behind it).
    The plan's safety share is spent first: the count falls only when the jobs left would
    no longer fit the budget at that pace, never rises above the plan's, and never falls
    below ``floor`` of it. A steady machine thus trains every job with the plan's count.

    Parameters
    ----------
    plan : dict
        :func:`epochs_for_budget`'s plan with ``planned_at`` (``time.time()`` when it was
        made: ``budget_s`` counts from then).
    done_epochs : list of int
        Epochs of the plan's jobs that trained before this one, in order.
    last_started_at : float
        ``time.time()`` when the last of them started (needed with ``done_epochs``).
    now : float, optional
        ``time.time()`` (for tests).

    Returns
    -------
    int
    """
    planned, spe = int(plan["epochs"]), float(plan["seconds_per_epoch"])
    if not done_epochs:
        return planned
    fixed = float(plan["per_job_fixed_s"])
    jobs_left = int(plan["jobs"]) - len(done_epochs)
    if jobs_left < 1:
        raise ValueError(f"the plan has {plan['jobs']} job(s) and {len(done_epochs)} ran")
    now = time.time() if now is None else now
    pace = max(1.0, (now - float(last_started_at)) / (fixed + done_epochs[-1] * spe))
    left = plan_deadline(plan) - now
    epochs = int(math.floor((left / jobs_left / pace - fixed) / spe))
    return max(floor_epochs(plan, floor), min(planned, epochs))


def floor_epochs(plan, floor=REPLAN_FLOOR):
    """The fewest epochs a fold of ``plan`` trains when re-planned or cut: ``floor`` of the
    plan's count, rounded up."""
    return int(math.ceil(floor * int(plan["epochs"])))


def plan_deadline(plan):
    """``time.time()`` by which a plan's jobs must end: ``budget_s`` from ``planned_at``,
    less the work after them (``after_s``)."""
    return float(plan["planned_at"]) + float(plan["budget_s"]) - float(plan["after_s"])


def epochs_within(deadline, now, epochs_done, epochs, last_epoch_s):
    """The epoch count of a running job that still ends by ``deadline``.

    A filter's plan comes from a few seconds of calibration; its epochs then also validate,
    checkpoint and share a machine that can slow down for minutes (a demo's filter once
    planned 25 s per epoch and ran 29-45 s: it ended 21 s past its budget, the demo 3 s past
    its 15 minutes). After each epoch the epochs left are fitted again at the pace of the
    last one, its wall clock with validation and checkpoints. The count is only ever cut,
    never raised, and never below the epochs already run: a steady machine keeps the plan.

    Parameters
    ----------
    deadline, now : float
        ``time.time()`` values: when the epochs must be over, and now.
    epochs_done, epochs : int
        Epochs run so far and the current total.
    last_epoch_s : float
        Wall seconds of the last epoch.

    Returns
    -------
    int
        The new total, ``epochs_done <= total <= epochs``.
    """
    if epochs_done >= epochs:
        return epochs
    fit = epochs_done + int(math.floor(max(0.0, deadline - now) / max(last_epoch_s, 1e-9)))
    return max(epochs_done, min(epochs, fit))


def cut_to_deadline(deadline, on_cut, what, plan, window=1, clock=time.time, floor=0):
    """``models.epochs.fit``'s ``replan`` for a job that must end by ``deadline``
    (``time.time()``): after each epoch, :func:`epochs_within` at the median pace of the last
    ``window`` epochs (no cut before ``window`` have run), never below ``floor`` epochs. A cut
    calls ``on_cut(new_total)`` before training goes on: the caller rebuilds its LR schedule
    for the new total, so the LR still anneals by the end, and records the count for a resumed
    run. ``what`` names the job in the warning; ``plan`` is its budget's plan; ``clock``:
    ``time.time`` (for tests).

    ``window``: a cut is never undone, so the pace it reads must not be one slow epoch among
    hundreds of short ones (a detector's epochs of a few seconds move by a third on a shared
    machine): the window's median ignores a few, and a slowdown that lasts shows once it
    fills half the window. A job of a few long epochs (the filter) reads the last one."""
    seconds = []

    def replan(done, total, epoch_s):
        seconds.append(epoch_s)
        if len(seconds) < window:
            return total
        pace = statistics.median(seconds[-window:])
        new = max(min(total, int(floor)), epochs_within(deadline, clock(), done, total, pace))
        if new < total:
            log.warning("time budget: %s trains %d of the planned %d epochs (its last %d "
                        "epoch(s) took a median %.1f s, planned %.1f s)", what, new,
                        plan["epochs"], window, pace, plan["seconds_per_epoch"])
            on_cut(new)
        return new
    return replan


def cut_job(deadline, on_cut, name, plan, epochs, floored=True, clock=time.time):
    """:func:`cut_to_deadline` for job ``name`` of ``plan`` that started with ``epochs``: at
    the median pace of its last :data:`PACE_SHARE` of them, never below
    :func:`floor_epochs` when ``floored`` (a fold; a final model, whose budget is the
    contract, has no floor)."""
    return cut_to_deadline(deadline, on_cut, name, plan, math.ceil(PACE_SHARE * epochs), clock,
                           floor_epochs(plan) if floored else 0)


#: The first job raises its plan's epochs when its own pace buys at least this many times
#: the planned count. Calibrations of the same machine and data read 0.8-1.3x the pace its
#: folds then kept; a raise corrects the reading further out (a demo's read 28.5 images/s
#: where its folds trained at 56-61, and bought 13 epochs a fold for a CV 0.21 under test).
RAISE_MIN = 1.25

#: Epochs whose median pace decides a raise: the first job's first ones, at least this many.
RAISE_WINDOW_MIN = 3


def raised_epochs(plan, epoch_s):
    """Epochs per job ``plan`` would have bought had its calibration read the pace its first
    job keeps: ``epoch_s`` seconds per epoch (training; an epoch that validated only makes it
    longer) in place of the calibrated training seconds, the rest of the plan's arithmetic
    (:func:`epochs_for_budget`: safety share, per-job costs, validations, the work after
    the jobs) unchanged."""
    per_epoch = float(plan["seconds_per_epoch"]) - _train_seconds(plan) + float(epoch_s)
    return _epochs_per_job(float(plan["budget_s"]), float(plan["after_s"]), int(plan["jobs"]),
                           float(plan["per_job_fixed_s"]), per_epoch,
                           float(plan["safety"])), per_epoch


def _train_seconds(plan):
    """The training seconds of one epoch as ``plan``'s calibration read them."""
    return float(plan["train_images"]) / float(plan["train_images_per_s"])


def raise_window(epochs):
    """The epochs of a first job of ``epochs`` whose median pace decides a raise: its first
    :data:`PACE_SHARE`, at least :data:`RAISE_WINDOW_MIN`."""
    return max(RAISE_WINDOW_MIN, math.ceil(PACE_SHARE * epochs))


def first_job_replan(plan, epochs, on_raise, make_cut, what="the first job"):
    """``models.epochs.fit``'s ``replan`` for the first job of ``plan``, which starts with
    ``epochs``: once its first :func:`raise_window` epochs have run, the plan's count is
    raised to :func:`raised_epochs` at their median pace when that buys at least
    :data:`RAISE_MIN` x the job's count; every epoch also goes to the cut (a ``replan``)
    ``make_cut(total)`` builds for a job of ``total`` epochs, rebuilt for a raised total.

    A calibration is a few seconds of a machine whose speed moves by a third within minutes;
    the plan is only ever cut after it, so a reading taken in a slow moment left the time it
    under-read unused (Ultralytics' ``time=`` re-estimates its epochs after every epoch, up
    and down). The first job's first epochs are a longer measure of the real work; a raise
    happens once, early, where the rebuilt LR schedule has barely moved, so every job of the
    plan trains the raised count and the folds stay comparable. ``on_raise(total,
    seconds_per_epoch)`` rebuilds the caller's LR schedule and records the new plan."""
    seconds, window = [], raise_window(epochs)
    cut = [make_cut(epochs)]

    def replan(done, total, epoch_s):
        seconds.append(epoch_s)
        if len(seconds) == window:
            pace = statistics.median(seconds)
            new, per_epoch = raised_epochs(plan, pace)
            if new >= RAISE_MIN * total:
                log.warning("time budget: %s and every job after it train %d epochs, not the "
                            "planned %d (its first %d epochs took a median %.2f s, the "
                            "calibration planned %.2f s of training)", what, new, total, window,
                            pace, _train_seconds(plan))
                on_raise(new, per_epoch)
                cut[0] = make_cut(new)
                return new
        return cut[0](done, total, epoch_s)
    return replan


def job_deadline(plan, jobs_started, now):
    """``time.time()`` by which a job starting ``now`` must end, when ``jobs_started`` of the
    plan's jobs started before it: an equal share of the time left to the plan's deadline
    (:func:`plan_deadline`) for it and each job after it, the share :func:`replan_epochs`
    sizes its epochs for. The last job's deadline is the plan's."""
    jobs_left = int(plan["jobs"]) - int(jobs_started)
    if jobs_left < 1:
        raise ValueError(f"the plan has {plan['jobs']} job(s) and {jobs_started} started")
    return now + (plan_deadline(plan) - now) / jobs_left


class JobReplanner:
    """Before each job of a plan (sequential jobs, in their order): its epochs from
    :func:`replan_epochs`, kept in ``plan["job_epochs"]`` (job name -> epochs) and handed to
    ``record(plan)`` before the job starts, so that a job child or a resumed run reads them
    back, with its start (``plan["job_started_at"]``) and the deadline a cut inside it keeps
    (``deadlines``, :func:`job_deadline`). A job asked for again gets its recorded count.

    A job cut inside itself records its count with :meth:`cut_in_job`, a first job that
    raises the plan with :meth:`raise_in_job`; a job child does so in a replanner of its own
    over the record, and ``reload()`` (the recorded plan, or None) brings those changes back
    here (:meth:`sync`) before the next job is planned or the plan recorded again, so the
    pace of a cut job is read against the epochs it trained, the jobs after a raise train
    the raised count, and no record is lost."""

    def __init__(self, plan, record, reload=None):
        self.plan = plan
        self.deadlines = {}
        self._record = record
        self._reload = reload

    def __call__(self, name):
        self.sync()
        counts = self.plan.setdefault("job_epochs", {})
        starts = self.plan.setdefault("job_started_at", {})
        if name in counts:
            return counts[name]
        now = time.time()
        counts[name] = replan_epochs(self.plan, list(counts.values()),
                                     max(starts.values()) if starts else None, now)
        self.deadlines[name] = job_deadline(self.plan, len(starts), now)
        starts[name] = now
        if counts[name] < self.plan["epochs"]:
            log.warning("time budget: %s trains %d of the planned %d epochs (the jobs before it "
                        "ran slower than calibrated)", name, counts[name], self.plan["epochs"])
        self._record(self.plan)
        return counts[name]

    def cut_in_job(self, name, epochs):
        """Job ``name``, running, now trains ``epochs`` (a cut by :func:`cut_to_deadline`):
        its recorded count, with the count it started with (``plan["cut_in_job"]``), so a
        resumed run trains no further."""
        self.sync()
        counts = self.plan["job_epochs"]
        self.plan.setdefault("cut_in_job", {}).setdefault(name, {"from": counts[name]})
        self.plan["cut_in_job"][name]["to"] = counts[name] = epochs
        self._record(self.plan)

    def raise_in_job(self, name, epochs, seconds_per_epoch):
        """The plan's first job ``name``, running, raised the plan to ``epochs`` a job at
        ``seconds_per_epoch`` (:func:`first_job_replan`): the plan's count and pace from now
        on, its record (``plan["raised_in_job"]``, with the calibrated ones) and the job's
        count, so the jobs after it and a resumed run train the raised count."""
        self.sync()
        self.plan["raised_in_job"] = {
            "job": name, "from": int(self.plan["epochs"]), "to": int(epochs),
            "calibrated_seconds_per_epoch": float(self.plan["seconds_per_epoch"]),
            "seconds_per_epoch": float(seconds_per_epoch)}
        self.plan["epochs"] = self.plan.setdefault("job_epochs", {})[name] = int(epochs)
        self.plan["seconds_per_epoch"] = float(seconds_per_epoch)
        self._record(self.plan)

    def sync(self):
        """Take back what job children recorded (``reload()``): their cuts, and a first
        job's raise with the plan's count and pace after it."""
        stored = self._reload() if self._reload is not None else None
        if not stored:
            return
        counts = self.plan.setdefault("job_epochs", {})
        raised = stored.get("raised_in_job")
        for name, epochs in (stored.get("job_epochs") or {}).items():
            if raised and name == raised["job"]:  # raised, then maybe cut: the child's count
                counts[name] = int(epochs)
            elif name in counts:  # counts are otherwise only cut: the lower one is the newer
                counts[name] = min(int(counts[name]), int(epochs))
        if raised:
            self.plan.update(raised_in_job=raised, epochs=int(stored["epochs"]),
                             seconds_per_epoch=float(stored["seconds_per_epoch"]))
        cuts = self.plan.setdefault("cut_in_job", {})
        for name, cut in (stored.get("cut_in_job") or {}).items():
            if name not in cuts or int(cut["to"]) < int(cuts[name]["to"]):
                cuts[name] = cut
        if not cuts:
            del self.plan["cut_in_job"]


def job_epochs(plan, name):
    """The epochs job ``name`` trains under ``plan``: re-planned if recorded, else the plan's."""
    return int((plan.get("job_epochs") or {}).get(name, plan["epochs"]))


def add_time_budget_argument(group, what, replanned=False):
    """Declare ``--time-budget MINUTES`` in ``group``; ``what`` says what must fit;
    ``replanned``: the script re-plans its jobs (:class:`JobReplanner`)."""
    group.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                       help=f"size the epochs to fit {what} into this many minutes, from "
                            "this machine's measured throughput; the count is recorded "
                            "(args.json derived.time_budget) and reproduces the run elsewhere "
                            "as --epochs" + (
                                ". Jobs run one at a time are re-planned before each (fewer "
                                "epochs, at least half, when the jobs before ran slower than "
                                "the plan's safety share allows; job_epochs records them), "
                                "and cut after an epoch when the epochs left would end past "
                                "the job's share of the time left at the pace of its last "
                                "tenth (cut_in_job records it; a fold keeps at least half)"
                                if replanned else ""))


def plan_filter(budget_s, train_crops, train_rate, val_crops, test_crops, predict_rate,
                members=1):
    """Epochs of the filter: one job validated every epoch, then the validation and test
    crops scored once by each of its ``members`` (a snapshot ensemble)
    (:func:`epochs_for_budget`'s plan)."""
    plan = epochs_for_budget(budget_s, train_crops, train_rate, val_crops, predict_rate, 1, 1,
                             after_s=members * (val_crops + test_crops) / predict_rate + 10.0)
    log.info("time budget: %d epochs (%.0f crops/s training, %.1f s per epoch)",
             plan["epochs"], train_rate, plan["seconds_per_epoch"])
    return plan
