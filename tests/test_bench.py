"""Training-step benchmarks (``python -m pose3d.bench steps | compile``)."""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_compile_bench_times_the_same_step_eager_and_compiled():
    from harness.bench import bench_compile

    result = bench_compile("smoke", 2, 1, ["baseline"])
    runs = result["experiments"]["baseline"]
    eager, compiled = runs["eager"], runs["compiled"]
    assert eager["steps_timed"] == compiled["steps_timed"] == 2 and eager["batch_size"] == compiled["batch_size"]
    assert runs["speedup"] == round(compiled["images_per_s"] / eager["images_per_s"], 2)
    # the compiled run pays its compilation before the timed steps
    assert compiled["seconds_before_timed_steps"] > eager["seconds_before_timed_steps"]
    assert "cores" in result["machine"] and result["torch_threads"] == 1
