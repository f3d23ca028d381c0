"""The scripts benchmarks/gpu_check.sh runs, on the CPU at toy sizes, so the first GPU machine does not spend its
few minutes on an argparse slip or a missing JSON field. What only CUDA can show lives in tests/test_gpu.py."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the whole check")
def test_gpu_check_script_parses_and_refuses_without_cuda():
    subprocess.run(["bash", "-n", os.path.join(ROOT, "benchmarks", "gpu_check.sh")], check=True)
    r = subprocess.run(
        ["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "no CUDA device" in r.stderr and "--dry-run" in r.stderr


def test_gpu_check_dry_run_runs_every_stage_and_leaves_what_comes_back(tmp_path):
    """The whole check's plumbing on the CPU (CUDA-only stages say so): exit 0, at most 8 files under $OUT with
    names the lease can bring back, every stage in summary.json, and the table in the last lines of the output."""
    out = tmp_path / "out"
    r = subprocess.run(
        ["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        env=dict(os.environ, OUT=str(out)),
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    files = sorted(os.listdir(out))
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files), files
    assert {
        "summary.json",
        "check.log",
        "junit_eager.xml",
        "junit_compiled.xml",
        "syncs.json",
        "compile.json",
        "perf.json",
        "diag.tgz",
    } == set(files)
    summary = json.loads((out / "summary.json").read_text())
    stages = {s["stage"]: s for s in summary["stages"]}
    assert list(stages) == [
        "preflight",
        "eager_tests",
        "syncs",
        "compile",
        "perf",
        "compiled_tests",
        "mjwarp",
    ]
    assert summary["finished"] and summary["dry_run"]
    assert all(s["status"] == "ok" for n, s in stages.items() if n != "mjwarp"), stages
    assert stages["mjwarp"]["status"] == "skipped" and "no CUDA" in stages["mjwarp"]["reason"]
    assert stages["syncs"]["key"]["actor_step"] == 0 and stages["syncs"]["key"]["critic_update"] == 0
    assert stages["preflight"]["key"]["ipc_smoke"]["ok"]
    perf = json.loads((out / "perf.json").read_text())
    assert perf["targets"]["trio_actor_env_steps_s"] > 0 and perf["targets"]["sync_env_steps_s"] > 0
    tail = "\n".join(r.stdout.splitlines()[-12:])
    assert "stage" in tail and "every stage ok or skipped" in tail


def test_learner_speed_writes_every_field_the_gpu_check_reads(tmp_path):
    """Pendulum's configuration and the batch x width sweep, eager against bf16 (no compiling; PQL's network at
    batch 8192 takes minutes on a CPU, so only its settings are checked)."""
    out = tmp_path / "ls.json"
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "learner_speed.py"),
            "--seconds",
            "0.02",
            "--rounds",
            "1",
            "--configs",
            "pendulum_default",
            "--modes",
            "eager",
            "bf16",
            "--sweep",
            "--roles",
            "critic",
            "--batches",
            "64",
            "--widths",
            "16",
            "32",
            "--out",
            str(out),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    d = json.loads(out.read_text())
    assert [r["config"] for r in d["configs"]] == ["pendulum_default"]
    assert [r["config"] for r in d["sweep"]] == ["w16_b64", "w32_b64"]
    assert "net.activation=elu" in d["sweep"][0]["overrides"]  # PQL's network, not Pendulum's ReLU default
    for row in d["configs"] + d["sweep"]:
        assert row["mm_gflops_per_s_float32"] > 0 and row["mm_gflops_per_s_bfloat16"] > 0
        bf16 = row["modes"]["bf16"]
        assert (
            bf16["critic_updates_per_s"] > 0
            and bf16["critic_speedup_vs_eager"] > 0
            and bf16["critic_frac_of_mm"] > 0
        )
    assert d["sweep"][0]["modes"]["eager"]["policy"] == []  # --roles critic: the sweep times only the critic
    assert d["device_name"] == "cpu" and d["machine"]


def test_trio_actor_speed_runs_its_comparison_on_a_native_task(tmp_path):
    out = tmp_path / "tas.json"
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "trio_actor_speed.py"),
            "--task",
            "pendulum",
            "--backend",
            "native",
            "--device",
            "cpu",
            "--num-envs",
            "16",
            "--seconds",
            "6",
            "--skip-s",
            "2",
            "--sim-seconds",
            "0.3",
            "--out",
            str(out),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    d = json.loads(out.read_text())
    assert d["standalone_env_steps_per_s"] > 0 and d["rows"], d
    assert 0 < d["ratio"] and d["trio_actor_env_steps_per_s"] > 0 and d["trio_critic_updates_per_s"] > 0
