"""gadgets.worker.Worker: jobs side by side, their results in submission order, cancellation."""

import threading
import time

import pytest

from gadgets.worker import Worker


def _job(out, i, seconds, ran=None):
    def run():
        time.sleep(seconds)
        if ran is not None:
            ran.append(i)
        return lambda: out.append(i)
    return run


def test_results_run_in_submission_order_while_jobs_run_side_by_side():
    out, ran = [], []
    w = Worker(threads=2)
    for i, seconds in enumerate([0.4, 0.05, 0.05, 0.2, 0.0]):
        w.submit(_job(out, i, seconds, ran))
    w.finish()
    assert w.wait(10)
    assert out == [0, 1, 2, 3, 4]
    assert ran.index(1) < ran.index(0), "job 1 did not run beside job 0"


def test_a_failed_or_resultless_job_does_not_hold_the_later_ones():
    out = []
    w = Worker(threads=2)

    def fails():
        raise ValueError("bad slice")

    w.submit(fails)
    w.submit(lambda: None)
    w.submit(_job(out, 2, 0.0))
    w.finish()
    assert w.wait(10) and out == [2]


def test_cancel_drops_the_queued_jobs_and_interrupts_the_running_ones():
    started = threading.Barrier(3)
    out = []

    def long():
        started.wait(5)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:  # Python steps, as the methods' loops: Cancelled gets in
            time.sleep(0.02)
        return lambda: out.append("late")

    w = Worker(threads=2)
    w.submit(long)
    w.submit(long)
    w.submit(_job(out, 2, 0.0))
    started.wait(5)
    t0 = time.monotonic()
    w.cancel()
    assert w.wait(5) and time.monotonic() - t0 < 3
    assert w.interrupted == 2 and w.dropped == 1 and out == []


def test_cancel_without_interrupt_lets_the_running_jobs_send_in_order():
    out = []
    w = Worker(threads=2)
    w.submit(_job(out, 0, 0.3))
    w.submit(_job(out, 1, 0.0))
    time.sleep(0.1)  # both running (job 1 waiting for its turn)
    w.cancel(interrupt=False)
    w.submit(_job(out, 2, 0.0))  # after the cancel: dropped
    assert w.wait(5)
    assert out == [0, 1] and w.interrupted == 0 and w.dropped == 1


@pytest.mark.parametrize("threads", [0, -1])
def test_a_worker_needs_a_thread(threads):
    with pytest.raises(ValueError, match="thread"):
        Worker(threads=threads)


def test_shared_workers_start_a_second_job_only_while_the_group_has_room():
    """Two workers sharing a Running count, 2 threads each: alone, a worker runs two jobs side by
    side; while the other worker runs one job, only one more starts."""
    from gadgets.worker import Running

    running = Running()
    peak = {"a": 0}
    lock = threading.Lock()

    def job(seconds):
        def run():
            with lock:
                peak["a"] = max(peak["a"], running.count)
            time.sleep(seconds)
        return run

    a = Worker("a", threads=2, shared=running)
    a.submit(job(0.3))
    a.submit(job(0.3))
    time.sleep(0.2)
    assert peak["a"] == 2  # alone: side by side
    a.finish()
    assert a.wait(5)

    b = Worker("b", threads=2, shared=running)
    b.submit(job(1.0))  # b's first thread: always
    time.sleep(0.1)
    peak["a"] = 0
    a = Worker("a2", threads=2, shared=running)
    for _ in range(3):
        a.submit(job(0.2))
    a.finish()
    assert a.wait(5)
    assert peak["a"] == 2, "a second job started beside b's and a's first"
    b.finish()
    assert b.wait(5) and running.count == 0
