"""What machine a benchmark ran on: the CPU's model and the vector features that change
PyTorch's speed (AVX2, AVX-512, bf16, AMX), printed beside every speed table."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_features() -> dict:
    """Model name and the AVX2 / AVX-512 / bf16 / AMX flags of /proc/cpuinfo (Linux)."""
    out = {"model": platform.processor() or platform.machine(), "avx2": None, "avx512f": None, "avx512_bf16": None,
           "amx": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    flags = set()
    for line in text.splitlines():
        if line.startswith("model name") and out["model"] in ("", platform.machine(), platform.processor()):
            out["model"] = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    out.update(avx2="avx2" in flags, avx512f="avx512f" in flags, avx512_bf16="avx512_bf16" in flags,
               amx=sorted(f for f in flags if f.startswith("amx")) or False)
    return out


def describe_cpu() -> str:
    """One line: the model, its AVX2 / AVX-512 / AMX features, the usable cores and the load."""
    cpu = cpu_features()
    vector = ", ".join(name for name, on in (("AVX2", cpu.get("avx2")), ("AVX-512", cpu["avx512f"]),
                                             ("AVX512-BF16", cpu["avx512_bf16"]), ("AMX", cpu["amx"])) if on) or "none"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{cpu['model']} ({vector}), {cores} cores usable, load average {load} (1 / 5 / 15 min)"
