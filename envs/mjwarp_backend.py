"""backend=mjwarp: the MJCF locomotion tasks on MuJoCo Warp (GPU), thousands of envs, zero-copy torch.

One `mujoco_warp` Model/Data pair holds every env as a "world" (nworld = num_envs). The task logic
(tasks/mjcf.py, shared with backend=mujoco) reads torch views of MJWarp's arrays (`warp.to_torch`, no
copies) and actions are written into the `ctrl` view in place. An env step is `frame_skip` calls of
`mujoco_warp.step` (+ `rne_postconstraint` for tasks that read cfrc_ext), captured once into a CUDA graph
on the GPU and replayed on a torch side stream that is ordered against torch's current stream both
ways (torch writes ctrl/qpos, warp simulates, torch reads). After those calls MJWarp's Data holds what
MuJoCo's MjData holds after `mj_step(nstep=frame_skip)`, so the derived fields the tasks read (xpos,
xipos, cinert, cvel, qfrc_actuator, cfrc_ext) carry Gymnasium's one-physics-step lag by construction.

Resets are masked, with static shapes: `mujoco_warp.reset_data(reset=done)` re-initialises the ended
worlds, their qpos/qvel get Gymnasium's reset noise through `torch.where`, and one `mujoco_warp.forward`
computes their first observation (it recomputes the other worlds' derived fields too, which the next
step recomputes anyway; `forward` leaves the state and warm start alone). The only host sync per step
is `done.any()`.

Differences from Gymnasium / backend=mujoco: float32 physics (MJWarp's precision); Humanoid's XML asks
for the PGS solver, which MJWarp does not implement, so this backend switches it to Newton (same
constraint model, solved to tolerance instead of 50 PGS sweeps).

`device="cpu"` runs MJWarp's kernels on Warp's CPU device: slow, for tests only.
Install: pip install 'mujoco>=3.17' 'mujoco-warp>=3.17' 'warp-lang' 'gymnasium[mujoco]>=1.0' (the [mjwarp] extra),
with an NVIDIA driver for CUDA 12.
"""

import torch

from pql_scaling.envs.contract import member_rows, time_limit

try:
    import mujoco
    import mujoco_warp as mjw
    import warp as wp
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "backend 'mjwarp' needs MuJoCo Warp: pip install 'mujoco>=3.17' 'mujoco-warp>=3.17' warp-lang "
        "'gymnasium[mujoco]>=1.0'   (or: pip install -e '.[mjwarp]'), and a CUDA GPU with a recent NVIDIA driver; "
        "the docker/Dockerfile image has it all"
    ) from exc

from pql_scaling.tasks.mjcf import MJCF_TASKS, load_model_and_task

TASKS = sorted(MJCF_TASKS)


class MJWarpVecEnv:
    """`members` > 1 (a population): num_envs / members worlds per member, member-major, in the one batched
    model; member k's resets draw from its own generator seeded with `seeds[k]`, and only when one of its own
    envs ended, so its envs are those of a single run with that seed (worlds never couple)."""

    def __init__(
        self,
        task,
        num_envs,
        device="cuda",
        seed=0,
        max_episode_steps=None,
        nconmax=None,
        njmax=None,
        cuda_graph=None,
        members=1,
        seeds=None,
        **task_overrides,
    ):
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if not wp.is_cuda_available():
                raise RuntimeError(
                    "backend 'mjwarp' was asked for device %r but Warp finds no CUDA device/driver; use a GPU machine "
                    "(e.g. the docker/Dockerfile image with --gpus all), or backend=mujoco on CPU"
                    % str(device)
                )
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            self._wp_device = "cuda:%d" % index
        elif self.device.type == "cpu":
            self._wp_device = "cpu"
        else:
            raise ValueError("backend 'mjwarp' runs on 'cuda' (or, slowly, 'cpu'), not %r" % str(device))
        mjm, self.task = load_model_and_task(task, self.device, **task_overrides)
        if mjm.opt.solver == mujoco.mjtSolver.mjSOL_PGS:
            mjm.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON  # MJWarp has no PGS (Humanoid's XML asks for it)
        self.num_envs = n = int(num_envs)
        self.obs_dim, self.act_dim = self.task.obs_dim, self.task.act_dim
        self.max_episode_steps = int(max_episode_steps or self.task.max_episode_steps)
        with wp.ScopedDevice(self._wp_device):
            self.m = mjw.put_model(mjm)
            self.d = mjw.make_data(mjm, nworld=n, nconmax=nconmax, njmax=njmax)
        view = wp.to_torch  # zero-copy: these tensors ARE the simulator's memory
        self._qpos, self._qvel, self._ctrl = view(self.d.qpos), view(self.d.qvel), view(self.d.ctrl)
        self._fields = {name: view(getattr(self.d, name)) for name in self.task.fields}
        self._use_graph = self.device.type == "cuda" if cuda_graph is None else bool(cuda_graph)
        self._graph = None
        if (
            self.device.type == "cuda"
        ):  # warp works on a torch side stream, ordered against torch's current one
            self._torch_stream = torch.cuda.Stream(device=self.device)
            self._wp_stream = wp.stream_from_torch(self._torch_stream)
        self.members = int(members)
        seeds = [int(seed)] if seeds is None else [int(x) for x in seeds]
        if len(seeds) != self.members or n % self.members:
            raise ValueError("%d seeds and %d envs for %d members" % (len(seeds), n, self.members))
        self.generators = [torch.Generator(device=self.device).manual_seed(x) for x in seeds]
        self.generator = self.generators[0]
        self.t = torch.zeros(n, dtype=torch.long, device=self.device)
        self._pos = torch.zeros(
            (n, self.task.position(self._qpos[:1].double(), self._fields_now(1)).shape[1]),
            dtype=torch.float64,
            device=self.device,
        )

    # -- physics -----------------------------------------------------------------------------------
    def _fields_now(self, rows=None):
        return {k: (v if rows is None else v[:rows]).double() for k, v in self._fields.items()}

    def _physics(self):
        for _ in range(self.task.frame_skip):
            mjw.step(self.m, self.d)
        if "cfrc_ext" in self.task.fields:
            mjw.rne_postconstraint(self.m, self.d)

    def _warp(self):
        """Context for warp launches: the side stream on CUDA (graph capture needs a non-default stream)."""
        if self.device.type == "cuda":
            return wp.ScopedStream(self._wp_stream)
        return wp.ScopedDevice("cpu")

    def _enter_warp(self):  # warp's stream waits for what torch queued (ctrl, qpos writes)
        if self.device.type == "cuda":
            self._torch_stream.wait_stream(torch.cuda.current_stream(self.device))

    def _leave_warp(self):  # torch's stream waits for warp's results before reading the views
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).wait_stream(self._torch_stream)

    def _run_physics(self):
        self._enter_warp()
        with self._warp():
            if not self._use_graph:
                self._physics()
            else:
                if self._graph is None:
                    with wp.ScopedCapture() as capture:
                        self._physics()
                    self._graph = capture.graph
                wp.capture_launch(self._graph)
        self._leave_warp()

    def _start_episodes(self, mask, qpos, qvel):
        """Re-initialise the worlds where `mask`, at (qpos, qvel) rows; returns every env's reset-obs."""
        mask = mask.contiguous()
        self._enter_warp()
        with self._warp():
            mjw.reset_data(self.m, self.d, reset=wp.from_torch(mask))
        self._leave_warp()
        self._qpos.copy_(torch.where(mask[:, None], qpos.to(self._qpos.dtype), self._qpos))
        self._qvel.copy_(torch.where(mask[:, None], qvel.to(self._qvel.dtype), self._qvel))
        self._enter_warp()
        with self._warp():
            mjw.forward(self.m, self.d)  # first observations need the new states' derived fields
        self._leave_warp()
        qpos_now, qvel_now = self._qpos.double(), self._qvel.double()
        fields = self.task.reset_fields(self._fields_now())
        self._pos = torch.where(mask[:, None], self.task.position(qpos_now, fields), self._pos)
        self.t = torch.where(mask, torch.zeros_like(self.t), self.t)
        return self.task.observe(qpos_now, qvel_now, fields)

    def _ended(self, done):
        """Per member: did one of its envs end? (the step's one host sync)"""
        if self.members == 1:
            return [bool(done.any())]
        return done.view(self.members, -1).any(1).tolist()

    def _reset_noise(self, ended):
        """(qpos, qvel) rows for every env, each member's drawn from its own generator where it has an env to
        reset (a single run draws only then); the other members' rows are never used (zeros)."""
        if self.members == 1:
            return self.task.reset_noise(self.num_envs, self.generator)
        n = self.num_envs // self.members
        parts = [self.task.reset_noise(n, g) if e else None for e, g in zip(ended, self.generators)]
        like = next(p for p in parts if p is not None)
        parts = [
            p if p is not None else (torch.zeros_like(like[0]), torch.zeros_like(like[1])) for p in parts
        ]
        return torch.cat([q for q, _ in parts]), torch.cat([v for _, v in parts])

    def _out(self, x):
        return x.to(torch.float32)

    # -- the env contract ------------------------------------------------------------------------
    def reset(self):
        mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        return self._out(self._start_episodes(mask, *self._reset_noise([True] * self.members)))

    def step(self, action):
        task = self.task
        ctrl = task.action_to_ctrl(action.detach().to(self.device))
        self._ctrl.copy_(ctrl)
        self._run_physics()
        self._pos, final_obs, reward, terminated = task.transition(
            self._pos, ctrl, self._qpos.double(), self._qvel.double(), self._fields_now()
        )
        self.t += 1
        truncated = time_limit(self.t, self.max_episode_steps, terminated)
        done = terminated | truncated
        next_obs = final_obs
        ended = self._ended(done)
        if any(ended):
            fresh = self._start_episodes(done, *self._reset_noise(ended))
            next_obs = torch.where(done[:, None], fresh, final_obs)
        return (
            self._out(next_obs),
            self._out(reward),
            terminated,
            truncated,
            {"final_obs": self._out(final_obs)},
        )

    def get_state(self):
        return self._qpos.double().clone(), self._qvel.double().clone()

    def set_state(self, qpos, qvel):
        """Start a new episode in every env from (qpos, qvel) (n, nq), (n, nv); returns the obs."""
        mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        qpos = torch.as_tensor(qpos, device=self.device).reshape(self.num_envs, -1)
        qvel = torch.as_tensor(qvel, device=self.device).reshape(self.num_envs, -1)
        return self._out(self._start_episodes(mask, qpos, qvel))

    # Checkpointing: what `mjw.step` reads besides ctrl (which every step writes), so a resumed run continues
    # the same episodes. Derived fields need no saving: every step recomputes them from these.
    SIM_STATE = ("qpos", "qvel", "act", "qacc_warmstart", "time")

    def state_dict(self):
        s = self._rows_state(slice(None))
        s["generator"] = self.generator.get_state()
        if self.members > 1:
            s["generators"] = [g.get_state() for g in self.generators]
        return s

    def _rows_state(self, rows):
        sim = {
            k: wp.to_torch(getattr(self.d, k))[rows].clone()
            for k in self.SIM_STATE
            if getattr(self.d, k).size
        }
        return {"sim": sim, "t": self.t[rows].clone(), "pos": self._pos[rows].clone()}

    def _member_rows(self, k):
        return member_rows(self.num_envs, self.members, k)

    def member_state_dict(self, k):
        """Member k's worlds as a single run with its seed checkpoints them (a population member's checkpoint)."""
        s = self._rows_state(self._member_rows(k))
        s["generator"] = self.generators[k].get_state()
        return s

    def load_member_state_dict(self, k, s):
        rows = self._member_rows(k)
        for name, v in s["sim"].items():
            view = wp.to_torch(getattr(self.d, name))[rows]
            if view.shape != v.shape:
                raise ValueError(
                    "checkpointed MJWarp %s has shape %s, a member's worlds %s: resume with the run's own task "
                    "and num_envs" % (name, tuple(v.shape), tuple(view.shape))
                )
            view.copy_(v.to(view.device))
        self.t[rows] = s["t"].to(self.device)
        self._pos[rows] = s["pos"].to(self.device)
        self.generators[k].set_state(s["generator"].cpu())

    def load_state_dict(self, s):
        for k, v in s["sim"].items():
            view = wp.to_torch(getattr(self.d, k))
            if view.shape != v.shape:
                raise ValueError(
                    "checkpointed MJWarp %s has shape %s, this env %s: resume with the run's own task and "
                    "num_envs" % (k, tuple(v.shape), tuple(view.shape))
                )
            view.copy_(v.to(view.device))
        self.t = s["t"].to(self.device).clone()
        self._pos = s["pos"].to(self.device).clone()
        self.generator.set_state(s["generator"].cpu())  # map_location may have moved it
        for g, state in zip(self.generators[1:], s.get("generators", [])[1:]):
            g.set_state(state.cpu())

    def close(self):
        self._graph = None


def make_env(task, num_envs, device="cuda", seed=0, **overrides):
    return MJWarpVecEnv(task, num_envs, device=device, seed=seed, **overrides)
