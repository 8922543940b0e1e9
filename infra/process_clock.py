"""When this process started, on the wall clock.

A script's clock that starts in ``main`` leaves out the interpreter's start and the imports
(mxnet, gluoncv, OpenCV: 2.5-4 s on a 2-core machine, more from a cold disk), which a user's
``time python demo.py`` counts. Linux records the start of every process in
``/proc/self/stat`` (field 22, clock ticks after boot); ``/proc/uptime`` gives the seconds
since boot on the same clock, so their difference is the process's age to a tick (10 ms).

That start is the fork, not the exec: a shell that runs its last command by exec'ing it
(``bash -c "pip install ... && python demo.py"`` does) hands the interpreter a process that
may have waited minutes for the commands before it. A script that reads its own clock on
its first line passes ``not_before``, the earliest its interpreter can have started, and
the start is never put before it.
"""
import os
import time


def _starttime_ticks(stat_text):
    """Field 22 of a ``/proc/<pid>/stat`` line. The command name (field 2) sits in
    parentheses and may itself hold spaces and parentheses, so fields are counted after
    its last ``)``."""
    after_comm = stat_text[stat_text.rindex(")") + 1:].split()
    return int(after_comm[22 - 3])  # after_comm[0] is field 3 (the state)


def age_s(stat_text, uptime_text, ticks_per_s):
    """Seconds since the process of ``stat_text`` started, ``uptime_text`` being
    ``/proc/uptime``'s content read now."""
    uptime = float(uptime_text.split()[0])
    return max(0.0, uptime - _starttime_ticks(stat_text) / float(ticks_per_s))


#: Seconds an interpreter can take from its exec to a script's first line, cold disk
#: included (0.016 s measured warm, on 2 cores); a process older than that at the script's first
#: line was exec'd into by a process that had run before it.
MAX_INTERPRETER_START_S = 5.0


def started_at(not_before=None):
    """This process's start as a ``time.time()`` value, and never before ``not_before``;
    None where ``/proc`` does not say (not Linux, or a restricted sandbox): callers then
    start their clock themselves."""
    try:
        with open("/proc/self/stat") as f:
            stat_text = f.read()
        with open("/proc/uptime") as f:
            uptime_text = f.read()
        age = age_s(stat_text, uptime_text, os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    start = time.time() - age
    return start if not_before is None else max(start, float(not_before))
