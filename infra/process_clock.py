"""When this process started, on the wall clock.

A script's clock that starts in ``main`` leaves out the interpreter's start and the imports
(mxnet, gluoncv, OpenCV: 2.5-4 s on a 2-core machine, more from a cold disk), which a user's
``time python demo.py`` counts. Linux records the start of every process in
``/proc/self/stat`` (field 22, clock ticks after boot); ``/proc/uptime`` gives the seconds
since boot on the same clock, so their difference is the process's age to a tick (10 ms).
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


def started_at():
    """This process's start as a ``time.time()`` value; None where ``/proc`` does not say
    (not Linux, or a restricted sandbox): callers then start their clock themselves."""
    try:
        with open("/proc/self/stat") as f:
            stat_text = f.read()
        with open("/proc/uptime") as f:
            uptime_text = f.read()
        age = age_s(stat_text, uptime_text, os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.time() - age
