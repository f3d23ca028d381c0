"""The one-shot GPU check (issue 19): everything worth knowing from a short, air-gapped GPU lease, in one command.

    bash benchmarks/gpu_check.sh            # on the GPU machine (installs .whl/ first if it travelled along)
    bash benchmarks/gpu_check.sh --dry-run  # on any CPU: every stage's plumbing at toy sizes, < 2 minutes

Stages run in order of what their answer is worth, each under its own time limit clipped to one overall budget
(--budget, default 460 s, so the command ends inside a 600 s limit with room to copy): a failure or a hang in one
never loses the others. Everything is written into $OUT (default benchmarks/results/gpu_<device>) as it happens,
at most 8 files: summary.json (every stage: status, seconds, key numbers; rewritten after each stage), check.log
(all output), junit_eager.xml and junit_compiled.xml (pytest, per-test durations), syncs.json, compile.json,
perf.json, diag.tgz (train.log / status.json of the tests' runs, TORCH_LOGS output, nvidia-smi -q). The last lines
printed are a table: a reader of only the last 40 lines knows what passed, what failed and why.

Standard library only: the driver must run even where the project's own imports fail (that is a finding too).
"""

import argparse
import glob
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FILES = 8


class Check:
    def __init__(self, out, budget, dry_run, py):
        self.out, self.budget, self.dry, self.py = out, budget, dry_run, py
        self.t0 = time.monotonic()
        self.tmp = tempfile.mkdtemp(prefix="gpu_check-")
        self.stages = []
        self.log = open(os.path.join(out, "check.log"), "a", buffering=1)
        self.env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            PYTHONFAULTHANDLER="1",
            PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
            TORCHINDUCTOR_CACHE_DIR=os.path.join(self.tmp, "inductor"),
            TRITON_CACHE_DIR=os.path.join(self.tmp, "triton"),
        )
        if dry_run:
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU plumbing, whatever the machine has

    def say(self, text):
        print(text, flush=True)
        self.log.write(text + "\n")

    def left(self):
        return self.budget - (time.monotonic() - self.t0)

    def run(self, cmd, limit, env=None):
        """Run one command under `limit` seconds (SIGINT, then SIGKILL 8 s later); its output goes to the log."""
        self.say("$ " + " ".join(cmd))
        p = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env or self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            errors="replace",
            bufsize=1,
        )

        def pump():
            for line in p.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                self.log.write(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            p.wait(limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.say("!! time limit %d s: SIGINT, then SIGKILL 8 s later" % limit)
            os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(8)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        reader.join(5)
        return p.returncode, timed_out

    def stage(self, name, limit, fn, cuda_only=False):
        row = {"stage": name, "status": "skipped", "seconds": 0.0}
        self.stages.append(row)
        limit = min(limit, self.left() - 10)
        if cuda_only and self.dry:
            row["reason"] = "no CUDA (dry run)"
        elif limit < 15:
            row["reason"] = "budget: %.0f s left of %d" % (self.left(), self.budget)
        else:
            self.say("\n=== %s (limit %d s, %.0f s of the budget left)" % (name, limit, self.left()))
            t = time.monotonic()
            try:
                row.update(fn(limit) or {})
            except Exception as e:  # noqa: BLE001 - the driver itself must not die on a stage
                row.update(status="error", reason="driver: %s: %s" % (type(e).__name__, e))
            row["seconds"] = round(time.monotonic() - t, 1)
            self.say("=== %s: %s in %.0f s %s" % (name, row["status"], row["seconds"], row.get("reason", "")))
        self.write_summary()

    def write_summary(self, final=False):
        summary = {
            "dry_run": self.dry,
            "budget_s": self.budget,
            "elapsed_s": round(time.monotonic() - self.t0, 1),
            "finished": final,
            "host": platform.node(),
            "python": self.py,
            "stages": self.stages,
        }
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)

    def has(self, module):
        return (
            subprocess.run([self.py, "-c", "import " + module], env=self.env, capture_output=True).returncode
            == 0
        )

    def py_cmd(self, *args):
        return [self.py] + list(args)

    def read_json(self, path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None


def status_of(rc, timed_out):
    return "timeout" if timed_out else ("ok" if rc == 0 else "failed")


def junit_counts(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suites = [root] if root.tag == "testsuite" else list(root)
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    n["failed_tests"] = [
        c.get("classname", "") + "::" + c.get("name", "")
        for s in suites
        for c in s.iter("testcase")
        if c.find("failure") is not None or c.find("error") is not None
    ][:10]
    return n


def preflight(c):
    def fn(limit):
        path = os.path.join(c.tmp, "env.json")
        rc, to = c.run(c.py_cmd("benchmarks/gpu_probe.py", "preflight", "--out", path), limit)
        env = c.read_json(path) or {}
        keep = (
            "torch",
            "cuda",
            "cuda_available",
            "gpus",
            "mem_total_gb",
            "nvidia_smi",
            "ipc_smoke",
            "cxx",
            "pkg_omegaconf",
            "pkg_pytest_timeout",
            "pkg_mujoco",
            "pkg_gymnasium",
            "dev_shm_free_gb",
        )
        return dict(status=status_of(rc, to), env=env, key={k: env.get(k) for k in keep})

    c.stage("preflight", 60, fn)


def pytest_stage(c, name, marker, junit, limit, extra=()):
    def fn(limit):
        path = os.path.join(c.out, junit)
        per_test = ["--timeout=%d" % min(110, max(limit - 10, 20))] if c.has("pytest_timeout") else []
        cmd = c.py_cmd(
            "-m",
            "pytest",
            "-q",
            "-m",
            marker,
            "tests/test_gpu.py",
            *extra,
            "-rA",
            "--durations=0",
            *per_test,
            "--basetemp=%s" % os.path.join(c.tmp, name),
            "--junitxml=%s" % path,
            "-p",
            "no:cacheprovider",
        )
        rc, to = c.run(cmd, limit)
        counts = junit_counts(path)
        ok = rc == 0 or (rc == 5 and not counts.get("failures"))  # 5: every test skipped / deselected
        return dict(status="timeout" if to else ("ok" if ok else "failed"), key=counts)

    c.stage(name, limit, fn)


def syncs(c):
    def fn(limit):
        path = os.path.join(c.out, "syncs.json")
        rc, to = c.run(c.py_cmd("benchmarks/gpu_probe.py", "syncs", "--out", path), limit)
        d = c.read_json(path) or {}
        key = {k: d[k]["per_call"] for k in ("actor_step", "critic_update", "policy_update") if k in d}
        key.update(
            {
                k + "_cuda_warnings": d[k]["cuda_debug_warnings_per_call"]
                for k in ("actor_step", "critic_update", "policy_update")
                if k in d
            }
        )
        return dict(status=status_of(rc, to), key=key)

    c.stage("syncs", 60, fn)


def compile_stage(c):
    def fn(limit):
        path = os.path.join(c.out, "compile.json")
        env = dict(
            c.env,
            TORCH_LOGS="recompiles,graph_breaks,cudagraphs",
            TORCH_LOGS_OUT=os.path.join(c.tmp, "torch_logs.txt"),
        )
        rc, to = c.run(c.py_cmd("benchmarks/gpu_probe.py", "compile", "--big", "--out", path), limit, env=env)
        d = c.read_json(path) or {}
        key = {
            f: {
                k: r.get(k)
                for k in (
                    "status",
                    "first_call_s",
                    "later_call_ms",
                    "cudagraph_skips",
                    "graph_breaks",
                    "max_abs_diff_vs_eager",
                    "error",
                )
                if r.get(k) is not None
            }
            for f, r in d.get("families", {}).items()
        }
        return dict(status=status_of(rc, to), key=key)

    c.stage("compile", 170, fn)


def perf(c):
    """Critic updates/s per mode at PQL's network against torch.mm; the trio's actor against the simulator alone and
    sync mode at 4096 envs (eager, save_replay=false)."""

    def fn(limit):
        t_end = time.monotonic() + limit
        res = {}
        dev = "cpu" if c.dry else "cuda"
        ls = os.path.join(c.tmp, "learner_speed.json")
        cmd = (
            [
                "--device",
                "cpu",
                "--configs",
                "pendulum_default",
                "--modes",
                "eager",
                "bf16",
                "--seconds",
                "0.05",
                "--rounds",
                "1",
            ]
            if c.dry
            else [
                "--device",
                "cuda",
                "--tf32",
                "--configs",
                "pql_default",
                "--modes",
                "eager",
                "graphed",
                "graphed_bf16",
                "--seconds",
                "1",
                "--rounds",
                "2",
            ]
        )
        rc, to = c.run(c.py_cmd("benchmarks/learner_speed.py", *cmd, "--out", ls), max(15, 0.45 * limit))
        statuses = [status_of(rc, to)]
        res["learner_speed"] = c.read_json(ls)
        tas = os.path.join(c.tmp, "trio_actor.json")
        n_envs, secs = ("16", "6") if c.dry else ("4096", "35")
        rc, to = c.run(
            c.py_cmd(
                "benchmarks/trio_actor_speed.py",
                "--task",
                "pendulum",
                "--backend",
                "native",
                "--device",
                dev,
                "--num-envs",
                n_envs,
                "--seconds",
                secs,
                "--skip-s",
                "2" if c.dry else "10",
                "--sim-seconds",
                "0.3" if c.dry else "3",
                "--extra",
                "save_replay=false",
                "--out",
                tas,
            ),
            max(15, min(0.6 * (t_end - time.monotonic()), 90)),
        )
        statuses.append(status_of(rc, to))
        res["trio_actor_speed"] = c.read_json(tas)
        run_dir = os.path.join(c.tmp, "sync_run")
        rc, to = c.run(
            c.py_cmd(
                "-m",
                "pql_scaling.cli",
                "train",
                "task=pendulum",
                "mode=sync",
                "device=%s" % dev,
                "num_envs=%s" % n_envs,
                "max_time_s=%s" % ("4" if c.dry else "25"),
                "save_replay=false",
                "max_env_steps=null",
                "log.live=plain",
                "run_dir=%s" % run_dir,
            ),
            max(15, t_end - time.monotonic()),
        )
        statuses.append(status_of(rc, to))
        status = next((x for x in reversed(statuses) if x != "ok"), "ok")  # the last sub-step that failed
        rows = []
        try:
            with open(os.path.join(run_dir, "metrics.jsonl")) as f:
                rows = [json.loads(x) for x in f if x.strip()]
        except (OSError, ValueError):
            pass
        if rows:
            last = rows[-1]
            res["sync"] = {k: last.get(k) for k in ("env_steps", "critic_updates", "wall_time_s")}
            res["sync"]["env_steps_per_s"] = last["env_steps"] / max(last["wall_time_s"], 1e-9)
        key = targets(res)
        with open(os.path.join(c.out, "perf.json"), "w") as f:
            json.dump(dict(res, targets=key, dry_run=c.dry), f, indent=1)
        return dict(status=status, key=key)

    c.stage("perf", 150, fn)


def targets(res):
    """Issue 19's targets from the perf numbers: graphed >= 3x eager, >= 50% of torch.mm, trio actor >= 90%."""
    key = {}
    for row in (res.get("learner_speed") or {}).get("configs", []):
        for mode, m in row.get("modes", {}).items():
            key["%s_%s_critic_upd_s" % (row["config"], mode)] = round(m.get("critic_updates_per_s", 0), 1)
            key["%s_%s_frac_of_mm" % (row["config"], mode)] = round(m.get("critic_frac_of_mm", 0), 3)
            if "critic_speedup_vs_eager" in m:
                key["%s_%s_speedup" % (row["config"], mode)] = round(m["critic_speedup_vs_eager"], 2)
        if row.get("errors"):
            key["%s_errors" % row["config"]] = row["errors"]
    tas = res.get("trio_actor_speed") or {}
    if tas:
        key["trio_actor_ratio"] = tas.get("ratio")
        key["trio_actor_env_steps_s"] = tas.get("trio_actor_env_steps_per_s")
        key["standalone_env_steps_s"] = tas.get("standalone_env_steps_per_s")
    if res.get("sync"):
        key["sync_env_steps_s"] = round(res["sync"]["env_steps_per_s"], 1)
    return key


def mjwarp(c):
    def fn(limit):
        rc, _ = c.run(c.py_cmd("-c", "import mujoco_warp, gymnasium"), 30)
        if rc != 0:
            return dict(status="skipped", reason="mujoco_warp / gymnasium not installed")
        cmd = c.py_cmd(
            "-m",
            "pytest",
            "-q",
            "tests/test_gpu.py",
            "-k",
            "mjwarp",
            "-p",
            "no:cacheprovider",
            "--basetemp=%s" % os.path.join(c.tmp, "mjwarp"),
        )
        rc, to = c.run(cmd, limit)
        return dict(status=status_of(rc, to))

    c.stage("mjwarp", 90, fn, cuda_only=True)


def diagnostics(c):
    """One tar of what explains a failure: the tests' run logs and statuses, TORCH_LOGS, nvidia-smi -q."""
    smi = os.path.join(c.tmp, "nvidia_smi_q.txt")
    if not c.dry:
        try:
            with open(smi, "w") as f:
                subprocess.run(["nvidia-smi", "-q"], stdout=f, stderr=subprocess.STDOUT, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
    files = [
        p
        for pat in ("**/train.log", "**/status.json", "torch_logs.txt", "nvidia_smi_q.txt", "env.json")
        for p in glob.glob(os.path.join(c.tmp, pat), recursive=True)
    ]
    with tarfile.open(os.path.join(c.out, "diag.tgz"), "w:gz") as tar:
        for p in files[:400]:
            if os.path.getsize(p) < 20e6:
                tar.add(p, arcname=os.path.relpath(p, c.tmp))


def table(c):
    lines = ["", "stage            status    seconds  key numbers / reason"]
    for r in c.stages:
        key = r.get("key") or r.get("reason") or ""
        text = json.dumps(key, default=str) if not isinstance(key, str) else key
        lines.append("%-16s %-9s %7.1f  %s" % (r["stage"], r["status"], r["seconds"], text[:400]))
    files = sorted(os.listdir(c.out))
    lines.append("files in %s (%d): %s" % (c.out, len(files), " ".join(files)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dry-run", action="store_true", help="CPU plumbing at toy sizes (CUDA-only stages skipped)"
    )
    ap.add_argument("--budget", type=float, default=float(os.environ.get("GPU_CHECK_BUDGET", 460)))
    ap.add_argument("--python", default=os.environ.get("PYTHON", sys.executable))
    args = ap.parse_args()
    if not args.dry_run:
        probe = subprocess.run(
            [args.python, "-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            sys.stderr.write(
                "gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False%s); nothing to "
                "check. On a CPU machine run the plumbing with --dry-run.\n"
                % ("; " + probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "")
            )
            return 2
    tag = (
        "dry_run"
        if args.dry_run
        else subprocess.run(
            [args.python, "-c", "import torch; print(torch.cuda.get_device_name(0).replace(' ', '_'))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    out = os.environ.get("OUT") or os.path.join(ROOT, "benchmarks", "results", "gpu_" + tag)
    os.makedirs(out, exist_ok=True)
    c = Check(out, args.budget, args.dry_run, args.python)
    c.say(
        "gpu_check: %s, budget %d s, results in %s"
        % ("dry run (CPU)" if args.dry_run else tag, args.budget, out)
    )
    try:
        preflight(c)
        pytest_stage(c, "eager_tests", "gpu and not compiled", "junit_eager.xml", 150)
        syncs(c)
        compile_stage(c)
        perf(c)
        pytest_stage(c, "compiled_tests", "gpu and compiled", "junit_compiled.xml", 120)
        mjwarp(c)
    finally:
        diagnostics(c)
        c.write_summary(final=True)
        c.say(table(c))
    n = len(os.listdir(out))
    bad = [r["stage"] for r in c.stages if r["status"] not in ("ok", "skipped")]
    if n > MAX_FILES:
        c.say("gpu_check: %d files in %s, more than the %d that come back" % (n, out, MAX_FILES))
        return 1
    c.say("gpu_check: %s" % ("every stage ok or skipped" if not bad else "not ok: " + ", ".join(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
