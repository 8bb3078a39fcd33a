"""``metarl bench envs``'s independent-process ceiling: what W cores step with nothing shared."""

import dataclasses
import time

import pytest

import metarl
from metarl.envs.bench import time_independent


def _broken_env():
    raise RuntimeError("this env cannot be built")


def test_independent_processes_all_report_and_sum():
    bench = metarl.make_benchmark("Toy", seed=0)
    r = time_independent(bench, workers=2, slots_per_worker=3, seconds=0.3)
    assert r["slots"] == 6
    assert 0 < r["per_process_min"] <= r["per_process_max"]
    # the total is the sum over the two processes, each between the slowest and the fastest
    assert 2 * r["per_process_min"] <= r["steps_per_s"] <= 2 * r["per_process_max"]
    # lockstep: each step paced by the slower process, so between one process's rate and the sum
    assert 0.9 * r["per_process_min"] <= r["lockstep_steps_per_s"] <= 1.1 * r["steps_per_s"]
    assert r["block_step_us"][50] <= r["block_step_us"][99.9]
    assert r["rss_mb_per_slot"] > 0


def test_a_process_that_dies_is_an_error_not_a_hang():
    bench = metarl.make_benchmark("Toy", seed=0)
    broken = dataclasses.replace(bench, train=dataclasses.replace(bench.train, env_factory=_broken_env))
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="failed"):
        time_independent(broken, workers=2, slots_per_worker=1, seconds=0.3)
    assert time.monotonic() - start < 60
