"""backend=isaacgym against the stand-ins in tests/fakes (written from the documented Isaac Gym API).

Isaac Gym must be imported before torch, so every check runs in a fresh interpreter with the fakes on
sys.path; the test process itself (which has torch) never imports them.
"""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKES = os.path.join(ROOT, "tests", "fakes")


def run(code, fakes=True, prelude=False):
    code = (PRELUDE if prelude else "") + textwrap.dedent(code)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(([FAKES] if fakes else []) + [ROOT])
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


PRELUDE = """
from envs.isaacgym_preimport import maybe_preimport_isaacgym
assert maybe_preimport_isaacgym(["task=Ant", "backend=isaacgym"])
import torch
import envs
"""


def test_fake_isaacgym_refuses_torch_first_and_adapter_explains():
    run("""
    import torch
    try:
        import isaacgym
    except ImportError as e:
        assert "PyTorch was imported before isaacgym modules" in str(e)
    else:
        raise AssertionError("the stand-in must refuse torch-first")
    import envs
    try:
        envs.make("Ant", 4, backend="isaacgym")
    except ImportError as e:
        assert "preimport_isaacgym" in str(e), e
    else:
        raise AssertionError("expected ImportError")
    """)


def test_preimport_does_not_import_torch_and_is_argv_driven():
    run("""
    import sys
    from envs.isaacgym_preimport import maybe_preimport_isaacgym, wants_isaacgym
    assert "torch" not in sys.modules
    assert not maybe_preimport_isaacgym(["task=HalfCheetah"]) and "isaacgym" not in sys.modules
    assert wants_isaacgym(["--backend", "isaacgym"]) and wants_isaacgym(["backend=isaacgym"])
    assert maybe_preimport_isaacgym(["backend=isaacgym"]) and "isaacgym" in sys.modules
    import torch, isaacgym
    """)


def test_missing_isaacgym_says_how_to_install():
    run("""
    import envs
    try:
        envs.make("Ant", 4, backend="isaacgym")
    except ImportError as e:
        msg = str(e)
        assert "Isaac Gym Preview 4" in msg and "Dockerfile.isaacgym" in msg and "Python 3.8" in msg, msg
    else:
        raise AssertionError("expected ImportError")
    assert envs.default_backend("Ant") == "mujoco" or envs.default_backend("Ant") is None
    """, fakes=False)


def test_deferred_resets_time_outs_valid_and_episode_returns():
    out = run(prelude=True, code="""
    env = envs.make("Ant", 64, seed=0, backend="isaacgym", cfg={"task": {"env": {"episodeLength": 12}}})
    task = env.task
    assert (env.obs_dim, env.act_dim, env.max_episode_steps) == (60, 8, 12)
    obs = env.reset()                                 # forced clean start
    assert (task.progress_buf == 1).all() and obs.shape == (64, 60)
    sim_return = task.rew_buf.double().clone()       # independent accounting from the sim's progress_buf
    prev_done = torch.zeros(64, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    n_term = n_trunc = n_invalid = n_eps = 0
    for t in range(60):
        action = (torch.rand((64, 8), generator=gen) * 2 - 1) * 3   # out of range: must be clamped
        next_obs, reward, terminated, truncated, info = env.step(action)
        assert task.last_actions.abs().max() <= 1.0
        done = terminated | truncated
        assert not (terminated & truncated).any()
        assert torch.equal(done, task.reset_buf.bool())
        assert torch.equal(truncated, task.extras["time_outs"].bool())
        assert torch.equal(info["valid"], ~prev_done)                 # the step after a done spans two episodes
        assert torch.equal(info["final_obs"], next_obs)               # deferred: the obs of a done env is terminal
        assert ((task.progress_buf == 1) == prev_done).all()          # ... and the sim restarted it in this step
        started = task.progress_buf == 1
        sim_return = torch.where(started, task.rew_buf.double(), sim_return + task.rew_buf.double())
        assert torch.allclose(info["episode_return"][done].double(), sim_return[done], atol=1e-5)
        assert torch.equal(info["episode_length"][done], task.progress_buf[done])
        assert (info["episode_return"][~done] == 0).all()
        n_term += int(terminated.sum()); n_trunc += int(truncated.sum()); n_invalid += int((~info["valid"]).sum())
        n_eps += int(done.sum())
        prev_done = done
    assert n_term > 0 and n_trunc > 0 and n_invalid > 0, (n_term, n_trunc, n_invalid)
    assert "states" not in info
    print(n_term, n_trunc, n_eps)
    """)
    n_term, n_trunc, n_eps = map(int, out.split())
    assert n_eps == n_term + n_trunc


def test_states_exposed_and_observations_clamped():
    run(prelude=True, code="""
    env = envs.make("ShadowHand", 8, seed=1, backend="isaacgym",
                    cfg={"task": {"env": {"numStates": 5, "episodeLength": 50}}})
    assert env.state_dim == 5
    env.reset()
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(torch.ones(8, env.act_dim))
        assert info["states"].shape == (8, 5) and obs.abs().max() <= 5.0
    """)


def test_one_simulation_per_process_and_gpu_choice_by_cuda_visible_devices():
    run(prelude=True, code="""
    try:
        envs.make("Ant", 4, backend="isaacgym", device="cuda:1")
    except ValueError as e:
        assert "CUDA_VISIBLE_DEVICES=1" in str(e)
    else:
        raise AssertionError("expected ValueError")
    env = envs.make("Ant", 4, backend="isaacgym")
    try:
        envs.make("Humanoid", 4, backend="isaacgym")
    except RuntimeError as e:
        assert "one simulation per process" in str(e)
    else:
        raise AssertionError("expected RuntimeError")
    """)


def test_seed_is_applied_by_the_adapter():
    code = """
    env = envs.make("Cartpole", 16, seed=7, backend="isaacgym")
    print(env.reset().sum().item())
    """
    assert run(code, prelude=True) == run(code, prelude=True)


def test_stand_in_follows_the_documented_vectask_surface():
    run("""
    import isaacgym, isaacgymenvs, torch
    task = isaacgymenvs.make(seed=0, task="FrankaCubeStack", num_envs=6, sim_device="cpu", rl_device="cpu")
    assert (task.num_envs, task.num_obs, task.num_actions, task.num_acts, task.num_states) == (6, 19, 7, 7, 0)
    assert task.max_episode_length == 300 and task.action_space.shape == (7,) and task.device == "cpu"
    assert (task.reset_buf == 1).all()                       # reset_buf starts at ones
    before = task.reset()["obs"].clone()
    assert (task.reset_buf == 1).all() and (task.progress_buf == 0).all()  # reset() resets nothing
    obs_dict, rew, done, extras = task.step(torch.zeros(6, 7))
    assert (task.progress_buf == 1).all() and "states" not in obs_dict and extras["time_outs"].dtype == torch.bool
    assert done.dtype == torch.long and rew.shape == (6,)
    other = isaacgymenvs.make(seed=0, task="Ant", num_envs=6, sim_device="cpu", rl_device="cpu")
    assert other.sim is task.sim                              # one sim per process: silently shared
    """)


def train_cli(tmp_path, mode, *extra):
    """`pql-scale train ... backend=isaacgym` in a fresh interpreter with the stand-ins installed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([FAKES, ROOT]))
    run_dir = str(tmp_path / mode)
    args = ["task=Ant", "backend=isaacgym", "mode=" + mode, "num_envs=16", "max_env_steps=3200", "max_time_s=120",
            "algo.batch_size=128", "net.actor_hidden=[32]", "net.critic_hidden=[32]", "log.every_steps=20",
            "log.live=plain", "threads=1", "run_dir=" + run_dir] + list(extra)
    proc = subprocess.run([sys.executable, "-m", "pql_scaling.cli", "train"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run_dir


def test_short_training_run_through_the_adapter_sync(tmp_path):
    import json

    run_dir = train_cli(tmp_path, "sync")
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert json.load(open(os.path.join(run_dir, "status.json")))["status"] == "completed"
    assert rows[-1]["env_steps"] == 3200 and rows[-1]["critic_updates"] > 0
    assert sum(r["episodes"] for r in rows) > 0  # episodes ended and were counted by the sim's own accounting
    assert json.load(open(os.path.join(run_dir, "run.json")))["backend"] == "isaacgym"


def test_short_training_run_through_the_adapter_trio(tmp_path):
    """The sim stays in the main process (imported before torch); the learners are spawned processes."""
    import json

    run_dir = train_cli(tmp_path, "trio")
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert json.load(open(os.path.join(run_dir, "status.json")))["status"] == "completed"
    assert rows[-1]["env_steps"] == 3200 and rows[-1]["critic_updates"] > 0 and rows[-1]["policy_updates"] > 0
    assert sum(r["episodes"] for r in rows) > 0
    assert "v_wait_frac" in rows[-1]  # trio's per-role metrics
