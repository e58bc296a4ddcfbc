"""pose3d.machine: the CPU facts timings are quoted with, and the bfloat16 decision."""
from __future__ import annotations

import pytest

from pose3d import machine


@pytest.fixture
def cpu(monkeypatch):
    def set_cpu(flags: str, limit: str | None = None):
        monkeypatch.setattr(machine, "_cpuinfo", lambda: ("Test CPU (family 6 model 1)", frozenset(flags.split())))
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        if limit is None:
            monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        else:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    return set_cpu


@pytest.mark.parametrize("flags, limit, expected", [
    ("avx2 fma", None, False),                        # an AVX2-only CPU emulates bfloat16
    ("avx2 avx512f avx512_bf16", None, True),
    ("avx2 avx512f amx_tile amx_bf16", None, True),
    ("avx2 avx512f avx512_bf16", "AVX2", False),      # limited to what an AVX2 CPU runs
    ("avx2 avx512f avx512_bf16", "avx512_core_bf16", True),
])
def test_native_bfloat16_follows_the_flags_and_onednn_limit(cpu, flags, limit, expected):
    cpu(flags, limit)
    assert machine.native_bfloat16() is expected


def test_cpu_description_names_model_flags_and_limit(cpu):
    cpu("sse avx2 fma avx512f", "AVX2")
    facts = machine.cpu_facts()
    assert facts["flags"] == ["avx2", "fma", "avx512f"] and facts["isa_limit"] == "AVX2"
    assert machine.describe_cpu().endswith("avx2 fma avx512f (oneDNN limited to AVX2)")
    assert machine.describe_cpu().startswith("Test CPU (family 6 model 1), ")
