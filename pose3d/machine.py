"""What the CPU is: the facts every benchmark and timing in this project is quoted with.

:func:`cpu_facts` gives the model name, the core count and the instruction-set flags that
decide the speed of the project's kernels (AVX2, AVX-512, native bfloat16: AVX512-BF16 or
AMX), plus any limit set on oneDNN's instruction set. ``ONEDNN_MAX_CPU_ISA=AVX2`` (with
``ATEN_CPU_CAPABILITY=avx2``) makes a newer CPU run the kernels an AVX2-only CPU runs, which is
how timings "without native bfloat16" can be taken on a CPU that has it; :func:`native_bfloat16`
honours that limit.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from pose3d.config import ConfigError

SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX",
             "AVX10_1_512_AMX_FP16", "ALL")  # oneDNN ISA limits that still allow bfloat16 arithmetic


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> tuple[str, frozenset]:
    """(model name with its family/model numbers, flags) of the first processor in /proc/cpuinfo;
    ("unknown", {}) without it. Virtual machines often hide the name ("Intel(R) Xeon(R)
    Processor"); the numbers still tell the generation (family 6 model 207: Emerald Rapids)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown", frozenset()
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = f"{fields.get('model name', 'unknown')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')})"
    return model, frozenset(fields.get("flags", "").split())


def isa_limit() -> str | None:
    """oneDNN's instruction-set limit (``ONEDNN_MAX_CPU_ISA``), if one is set."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or None


def native_bfloat16() -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX) and oneDNN may use it."""
    flags = _cpuinfo()[1]
    limit = isa_limit()
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and (limit is None or limit.upper() in BF16_ISAS)


def cpu_facts() -> dict:
    """``{"model", "cores", "flags", "isa_limit", "native_bfloat16"}`` of this CPU."""
    model, flags = _cpuinfo()
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in SPEED_FLAGS if f in flags],
            "isa_limit": isa_limit(), "native_bfloat16": native_bfloat16()}


def accelerators() -> list[str]:
    """The ``trainer.accelerator`` names this machine can run: cpu, plus cuda/gpu where torch sees a
    CUDA device and mps on Apple silicon."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda", "gpu"]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def check_accelerator(name: str) -> None:
    """``trainer.accelerator`` is 'auto' or one this machine has (before Lightning, or a CUDA query, sees it)."""
    found = accelerators()
    if name != "auto" and name not in found:
        raise ConfigError(f"bad value for trainer.accelerator: '{name}'; this machine has {', '.join(found)}; "
                          "expected one of them or auto")


def describe_cpu() -> str:
    """One line: ``Intel(R) Xeon(R) ..., 2 cores, avx2 fma avx512f ... (oneDNN limited to AVX2)``."""
    facts = cpu_facts()
    limit = f" (oneDNN limited to {facts['isa_limit']})" if facts["isa_limit"] else ""
    return f"{facts['model']}, {facts['cores']} cores, {' '.join(facts['flags']) or 'no AVX'}{limit}"


def recorded_machines(metrics: list[dict]) -> str:
    """The distinct CPUs a set of runs' ``metrics.json`` say their seconds were measured on, in
    order, joined by "; " (a run from before the record: "a CPU not recorded")."""
    return "; ".join(dict.fromkeys(m.get("machine") or "a CPU not recorded" for m in metrics))
