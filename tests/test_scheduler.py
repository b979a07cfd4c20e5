"""The per-device model runner: one thread, calls batched by key, failures kept to their own call."""

import ctypes
import threading
import time

import pytest
import torch

from recon.scheduler import ModelRunner, runner_for


def _concurrently(fns):
    out = [None] * len(fns)

    def go(i):
        try:
            out[i] = fns[i]()
        except Exception as exc:  # noqa: BLE001
            out[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def _blocking_runner():
    """A runner whose first call holds the thread until released, so that later calls queue behind it."""
    runner = ModelRunner("test", max_batch=3)
    gate = threading.Event()
    started = threading.Event()

    def hold(items):
        started.set()
        gate.wait(10)
        return items

    t = threading.Thread(target=runner.call, args=("hold", hold, 0), daemon=True)
    t.start()
    assert started.wait(10)
    return runner, gate


def _wait_queued(runner, n):
    end = time.monotonic() + 10
    while len(runner._queue) < n and time.monotonic() < end:
        time.sleep(0.01)
    assert len(runner._queue) == n


def test_calls_of_one_key_are_batched_and_each_gets_its_own_result():
    runner, gate = _blocking_runner()
    seen = []

    def double(items):
        seen.append(list(items))
        return [2 * i for i in items]

    calls = [lambda i=i: runner.call("a", double, i) for i in range(5)]
    calls.append(lambda: runner.call("b", double, 100))
    results = []
    waiter = threading.Thread(target=lambda: results.extend(_concurrently(calls)))
    waiter.start()
    _wait_queued(runner, 6)
    gate.set()
    waiter.join(30)
    assert results == [0, 2, 4, 6, 8, 200]
    assert sorted(len(s) for s in seen) == [1, 2, 3]  # at most max_batch=3 per batch, keys never mixed
    assert [100] in seen


def test_a_failing_item_fails_only_its_own_call():
    runner, gate = _blocking_runner()

    def picky(items):
        if 13 in items:
            raise ValueError("13 is bad")
        return [i + 1 for i in items]

    results = []
    waiter = threading.Thread(target=lambda: results.extend(
        _concurrently([lambda i=i: runner.call("k", picky, i) for i in (1, 13, 2)])))
    waiter.start()
    _wait_queued(runner, 3)
    gate.set()
    waiter.join(30)
    assert results[0] == 2 and results[2] == 3
    assert isinstance(results[1], ValueError) and "13 is bad" in str(results[1])


def test_a_caller_that_gives_up_is_skipped_before_its_call_starts():
    """The Worker's asynchronous Cancelled reaches a waiting caller; its queued call never runs."""
    runner, gate = _blocking_runner()
    ran = []

    class Stop(BaseException):
        pass

    def record(items):
        ran.extend(items)
        return items

    caller = threading.get_ident()
    threading.Timer(0.2, lambda: ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(caller), ctypes.py_object(Stop))).start()
    with pytest.raises(Stop):
        runner.call("x", record, "abandoned")
    gate.set()
    assert runner.call("y", record, "kept") == "kept"
    assert ran == ["kept"]


def test_learned_model_batched_equals_one_by_one(tiny_weights):
    """The batch function of a learned method: each slice of a batch as if it ran alone."""
    from recon.inference import _forward, load_cached

    model, _ = load_cached("crunet_ca", "cpu")
    g = torch.Generator().manual_seed(0)
    items = []
    for scale in (1.0, 1e-3):
        k = scale * torch.randn(1, 4, 3, 16, 12, dtype=torch.complex64, generator=g)
        mask = (torch.rand(1, 4, 16, generator=g) > 0.5).float()
        maps = torch.randn(1, 3, 16, 12, dtype=torch.complex64, generator=g)
        maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
        items.append((k * mask[..., None, :, None], mask, maps, torch.tensor([0.3 * scale])))  # noise-weighted DC
    both = _forward(model, "fp32", None, items)
    alone = [_forward(model, "fp32", None, [i])[0] for i in items]
    for b, a in zip(both, alone):
        assert b.shape == (4, 16, 12)
        assert torch.allclose(b, a, rtol=1e-4, atol=1e-5 * a.abs().max().item())


def test_lanes_run_calls_side_by_side_and_no_more():
    runner = ModelRunner("lanes", lanes=2)
    inside, most, lock = [0], [0], threading.Lock()

    def slow(items):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        with lock:
            inside[0] -= 1
        return items

    assert _concurrently([lambda i=i: runner.call(i, slow, i) for i in range(5)]) == [0, 1, 2, 3, 4]
    assert most[0] == 2 and runner.batch_sizes == {1: 5}


def test_a_lane_alone_uses_every_thread_and_shares_them_under_load():
    before = torch.get_num_threads()
    runner = ModelRunner("threads", lanes=2, threads=2)
    assert (runner.lane_threads(alone=True), runner.lane_threads(alone=False)) == (2, 1)
    assert ModelRunner("none").lane_threads(alone=True) is None  # CUDA: torch's setting is left alone
    seen = []

    def record(items):
        seen.append(torch.get_num_threads())
        time.sleep(0.1)
        return items

    _concurrently([lambda: runner.call("a", record, 0)])  # a lone slice from a connection thread
    assert seen == [2]  # all threads
    seen.clear()
    _concurrently([lambda i=i: runner.call(i, record, i) for i in range(4)])
    assert 1 in seen  # side by side: a share each
    assert torch.get_num_threads() == before  # set in the lanes' threads only


def test_the_main_thread_runs_its_own_calls():
    """A one-shot command's main thread runs the forward itself (its OpenMP team, no lane's);
    other threads' calls run in the lanes."""
    runner = ModelRunner("inline", lanes=2, threads=2)
    where = []

    def record(items):
        where.append(threading.current_thread().name)
        return items

    assert runner.call("a", record, 1) == 1 and where == [threading.main_thread().name]
    _concurrently([lambda: runner.call("a", record, 2)])
    assert where[1].startswith("crunet-model-inline-")
    assert runner.batch_sizes[1] == 2


def test_one_runner_per_device():
    assert runner_for("cpu") is runner_for(torch.device("cpu"))
    assert runner_for("cpu") is not runner_for("cuda:0")
    assert (runner_for("cuda:0").lanes, runner_for("cuda:0").max_batch) == (1, 4)
    assert runner_for("cpu").max_batch == 1
    with pytest.raises(ValueError, match="max_batch"):
        ModelRunner("x", max_batch=0)


def test_spare_calls_wait_behind_the_others():
    """A call made inside spare() (a connection's second slice) runs after a later ordinary call."""
    from recon.scheduler import spare

    runner, gate = _blocking_runner()
    order = []

    def log(items):
        order.extend(items)
        return items

    def spare_call():
        with spare():
            return runner.call("spare", log, "spare")

    threads = [threading.Thread(target=spare_call)]
    threads[0].start()
    _wait_queued(runner, 1)
    threads.append(threading.Thread(target=runner.call, args=("first", log, "first")))
    threads[1].start()
    _wait_queued(runner, 2)
    gate.set()
    for t in threads:
        t.join(10)
    assert order == ["first", "spare"]
