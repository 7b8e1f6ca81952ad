"""VALE_POLLING_ENABLE / DISABLE: threads that pull frames into a switch.

Polling (bwraps only, as netmap): a daemon thread per polling "CPU" runs
the bwrap's receive step (hw's RX ring i into the switch) on its hw RX
rings in a loop, so frames enter the switch even if hw's driver never
notifies.  It loops while frames flow and sleeps up to a millisecond when
idle; it is pinned to the CPU the request names when that CPU exists.
"""

import errno
import logging
import os
import threading

from nmfuse.abi.netmap import lib
from nmfuse.netmap.kring import RX, TX

log = logging.getLogger("nmfuse.vale")

POLLING_MODE_SINGLE_CPU = lib.NETMAP_POLLING_MODE_SINGLE_CPU
POLLING_MODE_MULTI_CPU = lib.NETMAP_POLLING_MODE_MULTI_CPU
POLL_IDLE_MAX_S = 0.001               # the longest nap of an idle poller


class Polling:
    """The polling threads of one bwrap (nm_bdg_polling_state)."""

    def __init__(self, bwrap, req):
        """Check ``req`` (struct nmreq_vale_polling) and start the threads
        (nm_bdg_ctl_polling_start).

        Raises:
            OSError: EINVAL (a configuration netmap refuses).
        """
        ncpus = os.cpu_count() or 1
        first, req_cpus = req.nr_first_cpu_id, req.nr_num_polling_cpus
        if req_cpus == 0 or req_cpus >= ncpus:
            raise OSError(errno.EINVAL, "nr_num_polling_cpus must be in 1..CPUs-1")
        if req.nr_mode == POLLING_MODE_MULTI_CPU:
            if first + req_cpus > bwrap.num_rings[RX]:
                raise OSError(errno.EINVAL, "rings out of range")
            qfirst, qlast, cpu_from = first, first + req_cpus, first
        elif req.nr_mode == POLLING_MODE_SINGLE_CPU:
            if req_cpus != 1:
                raise OSError(errno.EINVAL, "single-CPU polling takes one CPU")
            qfirst, qlast, cpu_from = 0, bwrap.num_rings[RX], first
        else:
            raise OSError(errno.EINVAL, "invalid polling mode")
        self.bwrap = bwrap
        self.stop_event = threading.Event()
        self.threads = []
        for i in range(req_cpus):
            whole = req_cpus == 1 and req.nr_mode == POLLING_MODE_SINGLE_CPU
            cpu = cpu_from + i
            q0 = qfirst if whole else cpu
            q1 = qlast if whole else q0 + 1
            self.threads.append(threading.Thread(target=self._loop, args=(q0, q1, cpu),
                                                 name=f"nmfuse-poll-{bwrap.name}-{i}", daemon=True))
        for t in self.threads:
            t.start()

    def halt(self) -> None:
        """Ask the threads to end.  They may be waiting for the core lock
        the caller holds, so they are not joined: each sees the flag when
        it gets the lock."""
        self.stop_event.set()

    def _loop(self, qfirst: int, qlast: int, cpu: int) -> None:
        bwrap, stop = self.bwrap, self.stop_event
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as e:
            # EINVAL: the CPU is not in this process's set (a container's
            # cpuset, say); netmap pins by index the same way and goes on.
            log.warning("%s: polling thread not pinned to CPU %d: %s", bwrap.name, cpu, e.strerror)
        idle = 0.0
        while not stop.is_set():
            moved = False
            with bwrap.core.lock:
                hw = bwrap.hw
                if stop.is_set() or hw.krings is None or bwrap.krings is None:
                    return
                for i in range(qfirst, min(qlast, hw.num_rings[RX])):
                    hk, bk = hw.krings[RX][i], bwrap.krings[TX][i]
                    before = bk.hwcur
                    hk.nm_notify(hk)
                    moved |= bk.hwcur != before
            if moved:
                idle = 0.0
            else:
                idle = min(POLL_IDLE_MAX_S, idle * 2 or 0.00005)
                stop.wait(idle)
