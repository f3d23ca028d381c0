"""backend=isaacgym against the stand-ins in tests/fakes (written from the documented Isaac Gym API).

Isaac Gym must be imported before torch, so every check runs in a fresh interpreter with the fakes on
sys.path; the test process itself (which has torch) never imports them.
"""

import os
import textwrap

import pytest

from tests.helpers import python_ok


def run(code, fakes=True, prelude=False):
    return python_ok(["-c", (PRELUDE if prelude else "") + textwrap.dedent(code)], fakes).stdout


PRELUDE = """
from pql_scaling.envs.isaacgym_preimport import maybe_preimport_isaacgym
assert maybe_preimport_isaacgym(["task=Ant", "backend=isaacgym"])
import torch
from pql_scaling import envs
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
    from pql_scaling import envs
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
    from pql_scaling.envs.isaacgym_preimport import maybe_preimport_isaacgym, wants_isaacgym
    assert "torch" not in sys.modules
    assert not maybe_preimport_isaacgym(["task=HalfCheetah"]) and "isaacgym" not in sys.modules
    assert wants_isaacgym(["--backend", "isaacgym"]) and wants_isaacgym(["backend=isaacgym"])
    assert maybe_preimport_isaacgym(["backend=isaacgym"]) and "isaacgym" in sys.modules
    import torch, isaacgym
    """)


def test_missing_isaacgym_says_how_to_install():
    run(
        """
    from pql_scaling import envs
    try:
        envs.make("Ant", 4, backend="isaacgym")
    except ImportError as e:
        msg = str(e)
        assert "Isaac Gym Preview 4" in msg and "Dockerfile.isaacgym" in msg and "Python 3.8" in msg, msg
    else:
        raise AssertionError("expected ImportError")
    assert envs.default_backend("Ant") == "mujoco" or envs.default_backend("Ant") is None
    """,
        fakes=False,
    )


# The reset order of each stand-in task (from IsaacGymEnvs 1.5.1's task files, see tests/fakes): the
# progress_buf of an env after the step that re-initialised it.
ORDERS = {"Ant": ("post_physics_step", 0), "ShadowHand": ("pre_physics_step", 1)}


@pytest.mark.parametrize("task", sorted(ORDERS))
def test_deferred_resets_time_outs_valid_and_episode_returns(task):
    where, progress_after_reset = ORDERS[task]
    out = run(
        prelude=True,
        code="""
    env = envs.make(%r, 64, seed=0, backend="isaacgym", cfg={"task": {"env": {"episodeLength": 12}}})
    task = env.task
    assert type(task).RESET_IN == %r
    assert env.max_episode_steps == 12
    obs = env.reset()                                 # forced clean start
    assert (task.progress_buf == %d).all() and obs.shape == (64, env.obs_dim)
    prev_done = torch.zeros(64, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    n_term = n_trunc = n_invalid = n_eps = 0
    lengths = set()
    for t in range(60):
        scale = torch.linspace(0.0, 3.0, 64)[:, None]  # calm envs time out, wild ones leave the box; > 1 is clamped
        action = (torch.rand((64, env.act_dim), generator=gen) * 2 - 1) * scale
        next_obs, reward, terminated, truncated, info = env.step(action)
        assert task.last_actions.abs().max() <= 1.0
        done = terminated | truncated
        assert not (terminated & truncated).any()
        assert torch.equal(done, task.reset_buf.bool())
        assert torch.equal(truncated, task.extras["time_outs"].bool())
        assert torch.equal(info["valid"], ~prev_done)                 # the step after a done spans two episodes
        assert torch.equal(info["final_obs"], next_obs)               # deferred: the obs of a done env is terminal
        assert ((task.progress_buf == %d) == prev_done).all()         # ... and the sim restarted it in this step
        assert (info["episode_return"][~done] == 0).all()
        lengths.update(info["episode_length"][truncated].tolist())
        n_term += int(terminated.sum()); n_trunc += int(truncated.sum()); n_invalid += int((~info["valid"]).sum())
        n_eps += int(done.sum())
        prev_done = done
    assert n_term > 0 and n_trunc > 0 and n_invalid > 0, (n_term, n_trunc, n_invalid)
    assert "final_critic_obs" not in info and env.critic_obs_dim == 0  # no states: the critic reads obs
    print(n_term, n_trunc, n_eps, sorted(lengths))
    """
        % (task, where, progress_after_reset, progress_after_reset),
    )
    n_term, n_trunc, n_eps = map(int, out.split()[:3])
    assert n_eps == n_term + n_trunc
    # a time-out after progress_buf reaches episodeLength - 1: 12 steps from the re-initialising step when it
    # resets in post_physics_step (progress 0 after it), 11 when in pre_physics_step (progress 1 after it)
    assert out.split("[")[1].strip().rstrip("]") == str(12 - progress_after_reset)


@pytest.mark.parametrize("task", sorted(ORDERS))
def test_actor_never_learns_the_spanning_step_and_logs_rl_games_episode_returns(task):
    """Through the real ActorRole: the replay row of every step that spans two episodes has weight 0 (and no
    other row has), time-outs keep gamma, terminations 0; the logged episode statistics equal rl_games'
    accounting of the simulator's raw (reward, done) stream, written here from rl_games' documented semantics:
    every step's reward is added to the env's running sum and its length counts one, and at done=1 the sums
    are reported and zeroed (so the re-initialising step belongs to the new episode). The stream includes
    the adapter's forced clean-start step, which rl_games would take as its first step."""
    run(
        prelude=True,
        code="""
    from pql_scaling import config as config_lib
    from pql_scaling.runtime.actor import ActorRole
    from pql_scaling.core.replay import Normalizer, Replay

    n, steps = 32, 80
    env = envs.make(%r, n, seed=3, backend="isaacgym", cfg={"task": {"env": {"episodeLength": 12}}})
    raw = []  # the simulator's own (reward, done) per step, as rl_games would see them
    sim_step = env.task.step
    def recording_step(actions):
        obs_dict, rew, done, extras = sim_step(actions)
        raw.append((rew.double().clone(), done.bool().clone(), extras["time_outs"].bool().clone()))
        return obs_dict, rew, done, extras
    env.task.step = recording_step
    cfg = config_lib.load(["task=%s", "backend=isaacgym", "num_envs=%%d" %% n, "algo.nstep=1", "algo.gamma=0.9",
                           "algo.warmup_steps=100000", "algo.reward_scale=1.0"])
    replay = Replay(n * steps, env.obs_dim, env.act_dim, n, "cpu")
    actor = ActorRole(cfg, env, replay, Normalizer(env.obs_dim, "cpu"), "cpu")
    for _ in range(steps):
        actor.step(None)  # warm-up: uniform random actions, no policy needed

    assert len(raw) == steps + 1 and not raw[0][1].any()   # the clean-start step ends no episode
    # rl_games' accounting over the same stream
    cur_r, cur_l = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    episodes = []
    for rew, done, _ in raw:
        cur_r += rew
        cur_l += 1
        episodes += list(zip(cur_r[done].tolist(), cur_l[done].tolist()))
        cur_r[done] = 0.0
        cur_l[done] = 0.0
    rets = torch.tensor([r for r, _ in episodes], dtype=torch.float64)
    lens = torch.tensor([l for _, l in episodes], dtype=torch.float64)
    total, total_sq, count, total_len = actor.stats.double().tolist()
    assert count == len(episodes) > 2 * n, (count, len(episodes))
    assert abs(total - rets.sum().item()) < 1e-3 * len(episodes), (total, rets.sum().item())
    assert abs(total_sq - rets.square().sum().item()) < 1e-2 * len(episodes)
    assert total_len == lens.sum().item()

    # replay rows: actor step k is raw step k + 1; it spans two episodes where raw step k ended one
    w = replay.data["weight"].reshape(steps, n)
    disc = replay.data["discount"].reshape(steps, n)
    spanning = torch.stack([raw[k][1] for k in range(steps)])
    assert spanning.any() and torch.equal(w == 0, spanning)
    done = torch.stack([raw[k + 1][1] for k in range(steps)])
    timeout = torch.stack([raw[k + 1][2] for k in range(steps)])
    term = done & ~timeout
    assert term.any() and timeout.any()
    assert (disc[term] == 0).all() and torch.allclose(disc[timeout], torch.tensor(0.9))
    assert torch.allclose(disc[~done], torch.tensor(0.9))
    """
        % (task, task),
    )


def test_states_exposed_and_observations_clamped():
    run(
        prelude=True,
        code="""
    env = envs.make("ShadowHand", 8, seed=1, backend="isaacgym",
                    cfg={"task": {"env": {"numStates": 5, "episodeLength": 50}}})
    assert env.state_dim == env.critic_obs_dim == 5  # the env contract's privileged critic observation
    env.reset()
    assert env.critic_obs.shape == (8, 5) and env.critic_obs.dtype == torch.float32
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(torch.ones(8, env.act_dim))
        assert env.critic_obs.shape == (8, 5) and obs.abs().max() <= 5.0
        assert torch.equal(info["final_critic_obs"], env.critic_obs)  # deferred resets: the last states
        # the point-mass stand-in's states are its observation features' sum, repeated
        assert torch.allclose(env.critic_obs, env.task.states_buf.clamp(-5.0, 5.0))
    """,
    )


def test_one_simulation_per_process_and_gpu_choice_by_cuda_visible_devices():
    run(
        prelude=True,
        code="""
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
    """,
    )


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
    # FrankaCubeStack resets in post_physics_step, after progress_buf += 1: the flagged envs are back at 0
    assert (task.progress_buf == 0).all() and "states" not in obs_dict and extras["time_outs"].dtype == torch.bool
    assert done.dtype == torch.long and rew.shape == (6,)
    other = isaacgymenvs.make(seed=0, task="Ant", num_envs=6, sim_device="cpu", rl_device="cpu")
    assert other.sim is task.sim                              # one sim per process: silently shared
    """)


def train_cli(tmp_path, mode, *extra):
    """`pql-scale train ... backend=isaacgym` in a fresh interpreter with the stand-ins installed."""
    run_dir = str(tmp_path / mode)
    args = [
        "task=Ant",
        "backend=isaacgym",
        "mode=" + mode,
        "num_envs=16",
        "max_env_steps=3200",
        "max_time_s=120",
        "algo.batch_size=128",
        "net.actor_hidden=[32]",
        "net.critic_hidden=[32]",
        "log.every_steps=20",
        "log.live=plain",
        "threads=1",
        "run_dir=" + run_dir,
    ] + list(extra)
    python_ok(["-m", "pql_scaling.cli", "train"] + args)
    return run_dir


def test_short_training_run_through_the_adapter_sync(tmp_path):
    import json

    run_dir = train_cli(tmp_path, "sync")
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert json.load(open(os.path.join(run_dir, "status.json")))["status"] == "completed"
    assert rows[-1]["env_steps"] == 3200 and rows[-1]["critic_updates"] > 0
    assert sum(r["episodes"] for r in rows) > 0  # episodes ended and were counted by the sim's own accounting
    assert json.load(open(os.path.join(run_dir, "run.json")))["backend"] == "isaacgym"


def test_resume_of_an_isaacgym_run_preimports_from_its_config(tmp_path):
    """`pql-scale train resume=RUN` names no backend: the pre-import must find backend=isaacgym in the run's
    config.yaml (else: "torch is already imported"); the resumed run starts new episodes (Isaac Gym's state
    cannot be saved) and continues every counter."""
    import json

    run_dir = train_cli(tmp_path, "sync", "max_env_steps=1600")
    before = len(open(os.path.join(run_dir, "metrics.jsonl")).readlines())
    python_ok(["-m", "pql_scaling.cli", "train", "resume=" + run_dir, "max_env_steps=3200"])
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert (
        len(rows) > before
        and rows[-1]["env_steps"] == 3200
        and rows[-1]["critic_updates"] > rows[before - 1]["critic_updates"]
    )
    assert sum(r["episodes"] for r in rows[before:]) > 0
    assert json.load(open(os.path.join(run_dir, "status.json")))["status"] == "completed"
    assert "cannot restore its simulator state" in open(os.path.join(run_dir, "train.log")).read()


def test_preimport_reads_the_backend_of_a_resumed_run(tmp_path):
    """Without torch: which arguments make the pre-import happen."""
    ig, mj = tmp_path / "ig", tmp_path / "mj"
    for d, backend in ((ig, "isaacgym"), (mj, "mujoco")):
        d.mkdir()
        (d / "config.yaml").write_text("task: Ant\nbackend: %s\n" % backend)
    run(
        """
    import sys
    from pql_scaling.envs.isaacgym_preimport import wants_isaacgym
    assert wants_isaacgym(["train", "resume=%s"]) and not wants_isaacgym(["train", "resume=%s"])
    assert not wants_isaacgym(["train", "resume=%s", "backend=mujoco"])   # the command line wins
    assert not wants_isaacgym(["train", "resume=/no/such/run"])            # train itself reports it
    assert wants_isaacgym(["train", "+backend=isaacgym"]) and not wants_isaacgym(["train", "task=Ant"])
    assert "torch" not in sys.modules
    """
        % (ig, mj, ig)
    )


def test_short_training_run_through_the_adapter_trio(tmp_path):
    """The sim stays in the main process (imported before torch); the learners are spawned processes."""
    import json

    run_dir = train_cli(tmp_path, "trio")
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert json.load(open(os.path.join(run_dir, "status.json")))["status"] == "completed"
    assert rows[-1]["env_steps"] == 3200 and rows[-1]["critic_updates"] > 0 and rows[-1]["policy_updates"] > 0
    assert sum(r["episodes"] for r in rows) > 0
    assert "v_wait_frac" in rows[-1]  # trio's per-role metrics


@pytest.mark.parametrize("mode", ["sync", "trio"])
def test_training_with_isaacgym_states_as_critic_obs(tmp_path, mode):
    """A task with `numStates`: its states reach the critic as the contract's privileged observation (run.json's
    critic_obs_dim; the critic's first layer takes states + actions), in sync and trio mode."""
    import json

    run_dir = train_cli(
        tmp_path, mode, "max_env_steps=1600", "env_kwargs={cfg: {task: {env: {numStates: 3}}}}"
    )
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert json.load(open(os.path.join(run_dir, "status.json")))["status"] == "completed"
    assert rows[-1]["env_steps"] == 1600 and rows[-1]["critic_updates"] > 0
    facts = json.load(open(os.path.join(run_dir, "run.json")))
    assert facts["critic_obs_dim"] == 3 and facts["obs_dim"] == 60
    assert facts["critic_params"] == 2 * ((3 + 8) * 32 + 32 + 32 + 1)  # twin [32] critics on states + actions
