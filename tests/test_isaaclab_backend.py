"""backend=isaaclab against the test double of Isaac Lab 3.0 in tests/fakes (written from Isaac Lab's documented
behaviour; tests/fakes/README.md says what it models and from which sources).

Isaac Lab allows one simulation per process, so every check runs in a fresh interpreter with the double on
sys.path; this test process never imports it.
"""

import json
import os
import subprocess
import sys
import textwrap

from tests.helpers import FAKES, ROOT, python_ok

PRELUDE = """
import logging, os, torch
from pql_scaling import envs
from tests.contract_check import check_contract
V2 = os.environ.get("FAKE_ISAACLAB_VERSION", "3").startswith("2")   # Isaac Lab 2.x's ids end in -v0
CARTPOLE = "Isaac-Cartpole-Direct-v0" if V2 else "Isaac-Cartpole-Direct"
ANYMAL = "Isaac-Velocity-Flat-Anymal-D-v0" if V2 else "Isaac-Velocity-Flat-AnymalD"
ALLEGRO = "Isaac-Repose-Cube-Allegro-Direct-v0" if V2 else "Isaac-Reorient-Cube-Allegro-Direct"
def make(task, n=16, **kw):
    kw.setdefault("physics", "newton_mjwarp")
    return envs.make(task, n, backend="isaaclab", **kw)
def wild(n, act_dim, gen, top=3.0):
    return (torch.rand((n, act_dim), generator=gen) * 2 - 1) * torch.linspace(0.2, top, n)[:, None]
"""


def run(code, fakes=True, version=None):
    env = dict(os.environ)
    env.pop("FAKE_ISAACLAB_VERSION", None)
    if version:
        env["FAKE_ISAACLAB_VERSION"] = version
    proc = python_ok(["-c", PRELUDE + textwrap.dedent(code)], fakes, env)
    return proc.stdout + proc.stderr


def test_contract_on_both_workflows_with_and_without_critic_group():
    run("""
    import isaaclab.sim
    from pql_scaling.envs import isaaclab_backend as lab
    for task, length in ((CARTPOLE, 0.2), (ANYMAL, 0.4), (ALLEGRO, 0.2)):
        env = make(task, 16, cfg_overrides={"episode_length_s": length})
        assert env.obs_dim == env.unwrapped.single_observation_space["policy"].shape[0]
        # max_episode_length, one less where the task's _get_dones says `max_episode_length - 1` (the double's
        # Allegro, as 3.0.0's reorient task); check_contract holds the truncations to it
        assert env.max_episode_steps == env.unwrapped.max_episode_length - (task == ALLEGRO)
        check_contract(env, wild=True)
        isaaclab.sim.SimulationContext.clear_instance()     # the double's way to allow the next env here
        lab._CREATED.clear()
    """)


def test_final_obs_is_the_true_last_observation_and_critic_obs_follow():
    """The rows of ended envs in final_obs / final_critic_obs are the observation the double computed before its
    reset (recorded here), not the returned next episode's; every other row equals next_obs / critic_obs; the
    double leaves a stale extras["final_obs"] on steps without resets (as Isaac Lab 3.0.0 does), which must not
    leak."""
    out = run("""
    for task in (ANYMAL, ALLEGRO, CARTPOLE):
        import isaaclab.sim
        from pql_scaling.envs import isaaclab_backend as lab
        env = make(task, 24, seed=1, cfg_overrides={"episode_length_s": 0.3})
        sim = env.unwrapped
        captured = {}
        reset_idx = sim._reset_idx
        def recording_reset(ids, reset_idx=reset_idx, sim=sim):
            captured["obs"] = {k: v.clone() if torch.is_tensor(v) else {t: x.clone() for t, x in v.items()}
                               for k, v in sim._observations().items()}
            reset_idx(ids)
        sim._reset_idx = recording_reset
        obs = env.reset()
        if env.critic_obs_dim:
            assert env.critic_obs.shape == (24, env.critic_obs_dim) and env.critic_obs.dtype == torch.float32
        else:
            assert env.critic_obs is None and task == CARTPOLE
        gen = torch.Generator().manual_seed(0)
        ended = 0
        for t in range(40):
            captured.clear()
            next_obs, reward, terminated, truncated, info = env.step(wild(24, env.act_dim, gen))
            done = terminated | truncated
            assert "valid" not in info or bool(info["valid"].all())
            final = info["final_obs"]
            assert torch.equal(final[~done], next_obs[~done])
            if env.critic_obs_dim:
                assert torch.equal(info["final_critic_obs"][~done], env.critic_obs[~done])
                assert not torch.equal(env.critic_obs[:, :env.critic_obs_dim - 2], env.critic_obs)  # privileged
            if done.any():
                ended += int(done.sum())
                true_last = lab._flat(captured["obs"]["policy"])
                assert torch.equal(final[done], true_last[done])
                assert not torch.equal(final[done], next_obs[done])   # the returned obs is the next episode's
                if env.critic_obs_dim:
                    assert torch.equal(info["final_critic_obs"][done], lab._flat(captured["obs"]["critic"])[done])
        assert ended > 24, ended
        env.close()
        isaaclab.sim.SimulationContext.clear_instance()
        lab._CREATED.clear()
        print(task, "ok")
    """)
    assert out.count(" ok") == 3


def test_without_final_obs_the_spanning_transitions_are_invalid_and_logged_once():
    """Isaac Lab 2.x (no compute_final_obs) and final_obs=False: the transitions of envs that ended carry
    valid=False (and only those); the log says so once."""
    for version, extra in (("2.3.0", ""), (None, "final_obs=False")):
        out = run(
            """
        logging.basicConfig(level=logging.INFO)
        env = make(ANYMAL, 16, cfg_overrides={"episode_length_s": 0.2}, %s)
        assert not env.final_obs_provided
        env.reset()
        gen = torch.Generator().manual_seed(0)
        n_invalid = 0
        for t in range(30):
            next_obs, reward, terminated, truncated, info = env.step(wild(16, env.act_dim, gen))
            done = terminated | truncated
            assert torch.equal(info["valid"], ~done)
            assert torch.equal(info["final_obs"], next_obs) and torch.equal(info["final_critic_obs"], env.critic_obs)
            n_invalid += int((~info["valid"]).sum())
        assert n_invalid > 16
        """
            % extra,
            version=version,
        )
        assert out.count("does not provide the final observation") == 1, out


def test_finite_horizon_time_outs_terminate_and_actions_are_rescaled():
    run("""
    import gymnasium as gym, numpy as np
    env = make(CARTPOLE, 8, cfg_overrides={"episode_length_s": 0.1, "is_finite_horizon": True,
                                           "action_space": gym.spaces.Box(-2.0, 2.0, (1,), np.float32)})
    assert env.is_finite_horizon
    env.reset()
    saw_limit = False
    for t in range(12):
        a = torch.linspace(-1.5, 1.5, 8)[:, None]
        next_obs, reward, terminated, truncated, info = env.step(a)
        assert torch.allclose(env.unwrapped.last_actions, 2.0 * a.clamp(-1, 1))   # [-1, 1] -> [-2, 2]
        assert not truncated.any()
        saw_limit |= bool(terminated.all())
    assert saw_limit                       # the time limit ended every episode, as a termination
    """)
    run("""
    env = make(ALLEGRO, 4)                 # Isaac Lab's unbounded action space: [-1, 1] clamped, unscaled
    env.reset()
    env.step(torch.full((4, env.act_dim), 3.0))
    assert torch.equal(env.unwrapped.last_actions, torch.ones(4, env.act_dim))
    """)


def test_one_simulation_per_process_kit_only_for_physx_device_and_seed():
    run("""
    import isaaclab.app, isaaclab.sim
    from pql_scaling.envs import isaaclab_backend as lab
    env = make(CARTPOLE, 4, device="cpu")
    assert not isaaclab.app.kit_running()                       # kit-less: no Isaac Sim launched for Newton
    assert env.unwrapped.sim.physics_backend == "newton" and env.unwrapped.cfg.sim.device == "cpu"
    assert env.reset().device == torch.device("cpu") and env.unwrapped.cfg.scene.num_envs == 4
    try:
        make(ANYMAL, 4)
    except RuntimeError as e:
        assert "one simulation per process" in str(e)
    else:
        raise AssertionError("a second Isaac Lab env in one process must be refused")
    env.close()
    isaaclab.sim.SimulationContext.clear_instance(); lab._CREATED.clear()
    env = make(ANYMAL, 4, physics="physx")                      # PhysX needs Isaac Sim: the launcher ran first
    assert isaaclab.app.kit_running() and env.unwrapped.sim.physics_backend == "physx"
    """)
    run(
        """
    try:
        make(CARTPOLE, 4, physics=None)                         # Isaac Lab 2.x: no physics config is PhysX: no Kit
    except RuntimeError as e:
        assert "Isaac Sim" in str(e)
    else:
        raise AssertionError("expected the double to refuse PhysX without Isaac Sim")
    """,
        version="2.3.0",
    )
    code = """
    env = make(ANYMAL, 8, seed=%d)
    print("OBS", env.reset().sum().item())
    """
    first = [line for line in run(code % 3).splitlines() if line.startswith("OBS")]
    again = [line for line in run(code % 3).splitlines() if line.startswith("OBS")]
    other = [line for line in run(code % 4).splitlines() if line.startswith("OBS")]
    assert first == again and first != other


def test_physics_presets_keep_the_tasks_tuned_solver_and_fall_back_without_presets():
    """3.0: physics=newton_mjwarp selects the task's own preset (Anymal-D flat's tuned MJWarp solver), physics=None
    the task's default (Newton, kit-less); Isaac Lab 2.x (no presets): a default NewtonCfg, said once."""
    run("""
    import isaaclab.app
    env = make(ANYMAL, 4)
    solver = env.env_cfg.sim.physics.solver_cfg
    assert (solver.njmax, solver.nconmax, solver.cone, solver.impratio) == (60, 25, "elliptic", 100.0)
    assert not isaaclab.app.kit_running()
    """)
    run("""
    import isaaclab.app
    env = make(CARTPOLE, 4, physics=None)                       # the task's default preset: Newton, no Kit
    assert env.unwrapped.sim.physics_backend == "newton" and env.env_cfg.sim.physics.solver_cfg.njmax == 5
    assert not isaaclab.app.kit_running()
    """)
    out = run(
        """
    logging.basicConfig(level=logging.INFO)
    env = make(ANYMAL, 4)
    assert env.unwrapped.sim.physics_backend == "newton" and env.env_cfg.sim.physics.solver_cfg.njmax == 300
    """,
        version="2.3.0",
    )
    assert out.count("has no physics presets; using a default newton_mjwarp configuration") == 1, out


def test_isaac_lab_2_ids_are_refused_with_their_3_0_names():
    run("""
    for old, new in (("Isaac-Cartpole-Direct-v0", CARTPOLE), ("Isaac-Velocity-Flat-Anymal-D-v0", ANYMAL),
                     ("Isaac-Repose-Cube-Allegro-Direct-v0", ALLEGRO)):
        try:
            make(old, 4)
        except ValueError as e:
            assert "Isaac Lab 3.0 names it %r" % new in str(e), e
        else:
            raise AssertionError(old)
    """)


def test_missing_isaaclab_says_how_to_install_and_config_checks():
    run(
        """
    try:
        envs.make("Isaac-Cartpole-Direct", 4, backend="isaaclab")
    except ImportError as e:
        msg = str(e)
        assert "isaaclab" in msg and "pip install" in msg and "Dockerfile.isaaclab" in msg, msg
    else:
        raise AssertionError("expected ImportError")
    assert envs.default_backend("Isaac-Cartpole-Direct") == "isaaclab"
    from pql_scaling import config, tasks
    assert tasks.defaults_path("Isaac-Cartpole-Direct").endswith("tasks/isaaclab/Isaac-Cartpole-Direct.yaml")
    for bad, words in ((["env_kwargs.physic=physx"], "did you mean"), (["env_kwargs.physics=bullet"], "newton_mjwarp"),
                       (["eval.every_steps=1000"], "Isaac Lab allows one simulation per process")):
        try:
            config.load(["task=Isaac-Cartpole-Direct", "backend=isaaclab"] + bad)
        except config.ConfigError as e:
            assert words in str(e), e
        else:
            raise AssertionError(bad)
    import sys
    from pql_scaling.envs.isaaclab_app import wanted_kit
    assert wanted_kit(["backend=isaaclab", "env_kwargs.physics=physx"]) == (True, True)
    assert wanted_kit(["backend=isaaclab"]) == (True, False) and wanted_kit(["task=pendulum"]) == (False, False)
    """,
        fakes=False,
    )


def test_cli_launches_isaac_sim_before_torch_for_physx():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pql_scaling.envs.isaaclab_app import maybe_launch_isaaclab_app; "
            "assert maybe_launch_isaaclab_app(['train', 'backend=isaaclab', 'env_kwargs.physics=physx']); "
            "import isaaclab.app; assert isaaclab.app.kit_running() and 'torch' not in sys.modules; "
            "assert not maybe_launch_isaaclab_app(['train', 'backend=mujoco']); print('ok')",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([FAKES, ROOT])),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr


def test_actor_bootstraps_time_outs_from_the_true_last_obs_and_never_learns_spanning_steps():
    """Through the real ActorRole (nstep 1): a time-out row's next_obs is the true last observation and keeps
    gamma; a terminated row has discount 0; with the final observation unavailable, exactly the rows of envs
    that ended have weight 0. Fails if final_obs is ignored, if a time-out is treated as a termination, or if
    the spanning transition is learned from."""
    code = """
    from pql_scaling import config as config_lib
    from pql_scaling.runtime.actor import ActorRole
    from pql_scaling.core.replay import Normalizer, Replay
    n, steps = 32, 60
    env = make(CARTPOLE, n, seed=3, cfg_overrides={"episode_length_s": 0.5}, final_obs=%s)
    raw = []
    lab_step = env.step
    def recording_step(action):
        out = lab_step(action)
        raw.append(tuple(x.clone() for x in out[:4]) + (out[4]["final_obs"].clone(),))
        return out
    env.step = recording_step
    cfg = config_lib.load(["task=" + CARTPOLE, "backend=isaaclab", "num_envs=%%d" %% n, "algo.nstep=1",
                           "algo.gamma=0.9", "algo.warmup_steps=100000", "algo.reward_scale=1.0"])
    replay = Replay(n * steps, env.obs_dim, env.act_dim, n, "cpu")
    actor = ActorRole(cfg, env, replay, Normalizer(env.obs_dim, "cpu"), "cpu")
    for _ in range(steps):
        actor.step(None)
    w = replay.data["weight"].reshape(steps, n)
    disc = replay.data["discount"].reshape(steps, n)
    nxt = replay.data["next_obs"].reshape(steps, n, -1)
    term = torch.stack([r[2] for r in raw]); trunc = torch.stack([r[3] for r in raw])
    final = torch.stack([r[4] for r in raw]); next_obs = torch.stack([r[0] for r in raw])
    done = term | trunc
    assert term.any() and trunc.any()
    assert (disc[term] == 0).all() and torch.allclose(disc[trunc], torch.tensor(0.9))   # time-outs bootstrap
    if %s:
        assert (w == 1).all()                                    # every transition is learned from ...
        assert torch.equal(nxt[trunc], final[trunc])             # ... a time-out from its true last observation
        assert not torch.equal(nxt[trunc], next_obs[trunc])      # (not the next episode's first)
    else:
        assert torch.equal(w == 0, done)                         # the spanning transitions, and only they, weigh 0
    print("checked", int(trunc.sum()), int(term.sum()))
    """
    for provided in ("True", "False"):
        assert "checked" in run(code % (provided, provided))


def train_cli(tmp_path, mode, *extra):
    run_dir = str(tmp_path / mode)
    args = [
        "task=Isaac-Velocity-Flat-AnymalD",
        "backend=isaaclab",
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
        "env_kwargs={physics: newton_mjwarp, cfg_overrides: {episode_length_s: 0.5}}",
        "run_dir=" + run_dir,
    ] + list(extra)
    python_ok(["-m", "pql_scaling.cli", "train"] + args)
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    assert json.load(open(os.path.join(run_dir, "status.json")))["status"] == "completed"
    assert rows[-1]["env_steps"] == 3200 and rows[-1]["critic_updates"] > 0 and rows[-1]["policy_updates"] > 0
    assert sum(r["episodes"] for r in rows) > 0
    assert json.load(open(os.path.join(run_dir, "run.json")))["backend"] == "isaaclab"
    log = open(os.path.join(run_dir, "train.log")).read()
    assert "evaluation off: Isaac Lab allows one simulation per process" in log
    return rows


def test_short_training_run_through_the_adapter_sync(tmp_path):
    train_cli(tmp_path, "sync")


def test_short_training_run_through_the_adapter_trio(tmp_path):
    rows = train_cli(tmp_path, "trio")
    assert "v_wait_frac" in rows[-1]
