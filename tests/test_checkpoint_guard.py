"""A checkpoint restored by retraining must reproduce its record (issues 16, 18): the machine kind
in a run's runtime, the score comparison, the guard and its marker, the fine-tune's lineage, on
tiny records written through the library (no training)."""

from __future__ import annotations

import types

import pytest

from covid_lib import provenance
from covid_lib.runs import execution

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
stepping\t: 1
flags\t\t: fpu sse avx512f avx512_bf16

processor\t: 1
model name\t: another core
"""


def test_machine_kind_reads_the_cpu_model_and_its_bf16_flags(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    monkeypatch.setattr(provenance, "CPUINFO", info)
    kind = provenance.machine_kind("cpu")
    assert kind["cpu"] == "AMD EPYC 9R14" and kind["cpu_id"] == "AuthenticAMD family 25 model 17 stepping 1"
    assert (kind["avx512_bf16"], kind["amx_bf16"]) == (True, False) and kind["torch"]
    label = provenance.machine_label(kind)
    assert label.startswith("AMD EPYC 9R14, AuthenticAMD family 25") and "(avx512_bf16; torch" in label
    assert provenance.machine_label(None) == f"unknown (recorded before {provenance.MACHINE_KIND_SINCE})"


def test_machine_kind_falls_back_without_cpuinfo(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CPUINFO", tmp_path / "absent")
    kind = provenance.machine_kind("cpu")
    assert kind["cpu"] and "cpu_id" not in kind
    assert all(kind[f] in (True, False, None) for f in provenance.BF16_FLAGS)


def test_the_runtime_block_of_timings_carries_the_machine_kind():
    fit = types.SimpleNamespace(seconds=2.0, images_per_s=10.0,
                                runtime={"device": "cpu", "precision": "bf16", "threads": 2})
    runtime = execution._timings(0.0, 1.0, fit, 0.5, 2)["runtime"]
    assert runtime["precision"] == "bf16" and runtime["machine"] == provenance.machine_kind("cpu")
    assert {"cpu", "avx512_bf16", "amx_bf16", "torch"} <= set(runtime["machine"])
