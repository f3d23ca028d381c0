"""backend=mujoco: batched MJCF locomotion on CPU with MuJoCo's multithreaded rollout.

Physics: one persistent `mujoco.rollout.Rollout` thread pool (one MjData per thread, shared
MjModel) advances all envs `frame_skip` physics steps per env step, straight from and into
preallocated float64 numpy arrays in MuJoCo's FULLPHYSICS state layout
(time, qpos, qvel, act, ...); the task logic (tasks/mjcf.py) reads torch views of those arrays
(`torch.from_numpy`, no copies). The rollout starts each call from a zero solver warm start
(MuJoCo's rollout does that for every trajectory), where Gymnasium carries the warm start over:
the difference is of the order of the constraint solver's tolerance.

Gymnasium reads derived MjData fields (xpos, xipos, cinert, cvel, qfrc_actuator, cfrc_ext) right
after `mj_step(nstep=frame_skip)` + `mj_rnePostConstraint`: they are whatever the last physics step
left in MjData (with RK4, as in Ant and Humanoid, the kinematics of its last Runge-Kutta stage), not a
function of the final qpos/qvel. For the tasks that need them (Ant, Humanoid) the rollout therefore
runs frame_skip - 1 physics steps and this backend runs the last one per env with `mj_step` +
`mj_rnePostConstraint` in the calling thread, copying the fields out: the same physics work, of which
1/frame_skip runs single-threaded. HalfCheetah, Hopper and Walker2d need only qpos/qvel and run all
frame_skip steps in the rollout.

Needs `mujoco>=3.3` (the `Rollout` class with a persistent pool) and `gymnasium>=1.0` for the
model files.
"""

import operator
import os

import numpy as np
import torch

from pql_scaling.envs.contract import member_rows, time_limit

try:
    import mujoco
    from mujoco import rollout as _mj_rollout

    _mj_rollout.Rollout  # noqa: B018 - the persistent-pool API, mujoco >= 3.3
except (ImportError, AttributeError) as exc:  # pragma: no cover - exercised only without mujoco
    raise ImportError(
        "backend 'mujoco' needs MuJoCo >= 3.3 with its rollout module and Gymnasium's MJCF models: "
        "pip install 'mujoco>=3.3' 'gymnasium[mujoco]>=1.0'   (or: pip install -e '.[mujoco]')"
    ) from exc

from pql_scaling.tasks.mjcf import MJCF_TASKS, load_model_and_task

TASKS = sorted(MJCF_TASKS)
FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS


def default_nthread():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class MujocoVecEnv:
    """`members` > 1 (a population): num_envs / members envs per member, member-major, in the one rollout
    pool; member k's resets draw from its own generator seeded with `seeds[k]`, so its envs are exactly the
    envs of a single run with that seed (physics never couples envs: each starts from a zero warm start)."""

    def __init__(
        self,
        task,
        num_envs,
        device="cpu",
        seed=0,
        nthread=None,
        max_episode_steps=None,
        members=1,
        seeds=None,
        **task_overrides,
    ):
        self.device = torch.device(device)
        self.model, self.task = load_model_and_task(task, "cpu", **task_overrides)
        self.num_envs = n = int(num_envs)
        self.obs_dim, self.act_dim = self.task.obs_dim, self.task.act_dim
        self.max_episode_steps = int(max_episode_steps or self.task.max_episode_steps)
        self.frame_skip = self.task.frame_skip
        self.nthread = default_nthread() if nthread is None else int(nthread)
        m = self.model
        # The pool runs rollouts on nthread workers (0: on the calling thread); one MjData each.
        self._pool = _mj_rollout.Rollout(nthread=self.nthread if self.nthread > 1 else 0)
        self._datas = [mujoco.MjData(m) for _ in range(max(self.nthread, 1))]
        self._models = [m] * n  # skip_checks=True wants one model per env
        self._scratch = self._datas[0]  # for the per-env field recomputation (calling thread only)

        nstate = mujoco.mj_stateSize(m, FULLPHYSICS)
        q0 = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_TIME)
        v0 = mujoco.mj_stateSize(
            m, operator.or_(mujoco.mjtState.mjSTATE_TIME, mujoco.mjtState.mjSTATE_QPOS)
        )  # or_: vermin reads `|` as a 3.10 union
        fresh = mujoco.MjData(m)
        self._state0 = np.empty(nstate)
        mujoco.mj_getState(m, fresh, self._state0, FULLPHYSICS)
        self.state = np.tile(self._state0, (n, 1))  # (n, nstate) FULLPHYSICS, the env's true state
        # Physics steps per env step done by the pool; the last one is ours where fields are needed.
        self._nroll = self.frame_skip - 1 if self.task.fields else self.frame_skip
        self._traj = np.empty((n, self._nroll, nstate))
        self._sensordata = np.empty((n, self._nroll, m.nsensordata))
        self._ctrl = np.zeros((n, self._nroll, m.nu))
        state_t = torch.from_numpy(self.state)  # views: writing self.state updates these
        self._qpos, self._qvel = state_t[:, q0 : q0 + m.nq], state_t[:, v0 : v0 + m.nv]
        self._ctrl_t = torch.from_numpy(self._ctrl)
        self._fields_np = {k: np.zeros(tuple(v.shape)) for k, v in self.task.dummy_fields(n).items()}
        self._fields = {k: torch.from_numpy(v) for k, v in self._fields_np.items()}

        self.members = int(members)
        seeds = [int(seed)] if seeds is None else [int(x) for x in seeds]
        if len(seeds) != self.members or n % self.members:
            raise ValueError("%d seeds and %d envs for %d members" % (len(seeds), n, self.members))
        self.generators = [torch.Generator().manual_seed(x) for x in seeds]
        self.generator = self.generators[0]
        self.t = torch.zeros(n, dtype=torch.long)
        self._pos = self.task.position(self._qpos, self._fields).clone()  # forward-velocity reference
        self._zero_ctrl = np.zeros(m.nu)

    # -- physics helpers ---------------------------------------------------------------------------
    def _fill_fields(self, rows, ctrls, step):
        """Gymnasium's view of MjData for envs `rows`, from their states in `self.state`: after one
        `mj_step` (step=True; the new state is written back) or after `mj_forward` (a reset)."""
        m, d = self.model, self._scratch
        for i, ctrl in zip(rows, ctrls):
            mujoco.mj_setState(m, d, self.state[i], FULLPHYSICS)
            d.ctrl[:] = ctrl
            d.qacc_warmstart[:] = 0.0  # as the rollout: results never depend on the loop order
            if step:
                mujoco.mj_step(m, d)
                mujoco.mj_rnePostConstraint(m, d)
                mujoco.mj_getState(m, d, self.state[i], FULLPHYSICS)
            else:
                mujoco.mj_forward(m, d)
            for name, buf in self._fields_np.items():
                buf[i] = getattr(d, name)

    def _start_episodes(self, rows, qpos, qvel):
        """Put envs `rows` (1-D long tensor) at (qpos, qvel) as Gymnasium's reset does; their first obs."""
        idx = rows.numpy()
        self.state[idx] = self._state0
        self._qpos[rows] = qpos.to(torch.float64)
        self._qvel[rows] = qvel.to(torch.float64)
        fields = {}
        if self._fields_np:
            self._fill_fields(idx, [self._zero_ctrl] * len(idx), step=False)
            fields = self.task.reset_fields({k: v[rows] for k, v in self._fields.items()})
        qpos_r, qvel_r = self._qpos[rows], self._qvel[rows]
        self._pos[rows] = self.task.position(qpos_r, fields)
        self.t[rows] = 0
        return self.task.observe(qpos_r, qvel_r, fields)

    def _reset_noise(self, rows):
        """Initial (qpos, qvel) for envs `rows` (ascending), each member's from its own generator: member k
        draws for its rows exactly what a single run draws for the same envs."""
        if self.members == 1:
            return self.task.reset_noise(len(rows), self.generator)
        per = self.num_envs // self.members
        member = rows // per
        parts = [
            self.task.reset_noise(int(c), g)
            for c, g in zip(torch.bincount(member, minlength=self.members).tolist(), self.generators)
            if c
        ]
        return torch.cat([q for q, _ in parts]), torch.cat([v for _, v in parts])

    def _out(self, x):
        return x.to(device=self.device, dtype=torch.float32)

    # -- the env contract ------------------------------------------------------------------------
    def reset(self):
        rows = torch.arange(self.num_envs)
        return self._out(self._start_episodes(rows, *self._reset_noise(rows)))

    def step(self, action):
        task = self.task
        ctrl = task.action_to_ctrl(action.detach().to("cpu"))  # (n, nu) float64, native units
        self._ctrl_t.copy_(ctrl[:, None, :].expand_as(self._ctrl_t))
        if self._nroll:
            self._pool.rollout(
                self._models,
                self._datas,
                self.state,
                self._ctrl,
                skip_checks=True,
                nstep=self._nroll,
                state=self._traj,
                sensordata=self._sensordata,
            )
            self.state[:] = self._traj[:, -1]
        if self._fields_np:  # the last physics step, leaving MjData as Gymnasium reads it
            self._fill_fields(range(self.num_envs), ctrl.numpy(), step=True)
        pos, final_obs, reward, terminated = task.transition(
            self._pos, ctrl, self._qpos, self._qvel, self._fields
        )
        self._pos = pos.clone()  # may be a view of the state
        self.t += 1
        truncated = time_limit(self.t, self.max_episode_steps, terminated)
        done = terminated | truncated
        next_obs = final_obs
        rows = done.nonzero()[:, 0]
        if len(rows):
            next_obs = final_obs.clone()
            next_obs[rows] = self._start_episodes(rows, *self._reset_noise(rows))
        dev = self.device
        return (
            self._out(next_obs),
            self._out(reward),
            terminated.to(dev),
            truncated.to(dev),
            {"final_obs": self._out(final_obs)},
        )

    # Batched state access (tests against Gymnasium, evaluation, debugging).
    def get_state(self):
        return self._qpos.clone().to(self.device), self._qvel.clone().to(self.device)

    def set_state(self, qpos, qvel):
        """Start a new episode in every env from (qpos, qvel) (n, nq), (n, nv); returns the obs."""
        qpos = torch.as_tensor(qpos, dtype=torch.float64).cpu().reshape(self.num_envs, -1)
        qvel = torch.as_tensor(qvel, dtype=torch.float64).cpu().reshape(self.num_envs, -1)
        return self._out(self._start_episodes(torch.arange(self.num_envs), qpos, qvel))

    # Checkpointing: everything a resumed run needs to continue the same episodes bit for bit. The
    # rollout starts every call from a zero warm start, so the FULLPHYSICS state is the whole physics.
    def state_dict(self):
        s = self._rows_state(slice(None))
        s["generator"] = self.generator.get_state()
        if self.members > 1:
            s["generators"] = [g.get_state() for g in self.generators]
        return s

    def _rows_state(self, rows):
        return {
            "state": torch.from_numpy(self.state[rows].copy()),
            "t": self.t[rows].clone(),
            "pos": self._pos[rows].clone(),
            "fields": {k: torch.from_numpy(v[rows].copy()) for k, v in self._fields_np.items()},
        }

    def _member_rows(self, k):
        return member_rows(self.num_envs, self.members, k)

    def member_state_dict(self, k):
        """Member k's envs as a single run with its seed checkpoints them (a population member's checkpoint)."""
        s = self._rows_state(self._member_rows(k))
        s["generator"] = self.generators[k].get_state()
        return s

    def load_member_state_dict(self, k, s):
        rows = self._member_rows(k)
        if tuple(s["state"].shape) != self.state[rows].shape:
            raise ValueError(
                "checkpointed MuJoCo state has shape %s, a member's envs %s: resume with the run's own task "
                "and num_envs" % (tuple(s["state"].shape), self.state[rows].shape)
            )
        self.state[rows] = s["state"].cpu().numpy()
        self.t[rows] = s["t"].cpu()
        self._pos[rows] = s["pos"].cpu()
        for name, v in s["fields"].items():
            self._fields_np[name][rows] = v.cpu().numpy()
        self.generators[k].set_state(s["generator"].cpu())

    def load_state_dict(self, s):
        if tuple(s["state"].shape) != self.state.shape:
            raise ValueError(
                "checkpointed MuJoCo state has shape %s, this env %s: resume with the run's own task "
                "and num_envs" % (tuple(s["state"].shape), self.state.shape)
            )
        self.state[:] = s["state"].cpu().numpy()  # in place: the qpos/qvel views stay valid
        self.t = s["t"].cpu().clone()
        self._pos = s["pos"].cpu().clone()
        for k, v in s["fields"].items():
            self._fields_np[k][:] = v.cpu().numpy()
        self.generator.set_state(s["generator"].cpu())  # map_location may have moved it
        for g, state in zip(self.generators[1:], s.get("generators", [])[1:]):
            g.set_state(state.cpu())

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def make_env(task, num_envs, device="cpu", seed=0, **overrides):
    return MujocoVecEnv(task, num_envs, device=device, seed=seed, **overrides)
