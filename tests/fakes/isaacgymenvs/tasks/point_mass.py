"""The stand-in's dynamics: a point mass per env in R^num_actions, pushed by the actions.

IsaacGymEnvs 1.5.1 tasks perform the resets requested by the previous step in one of two places (read
from its task files): Ant, Humanoid, Anymal, FrankaCubeStack and Cartpole call `reset_idx` in
`post_physics_step` right after `progress_buf += 1` (the physics of that step ran on the ended episode's
state; `progress_buf` is 0 after it), ShadowHand, AllegroHand and BallBalance at the start of
`pre_physics_step` (the step's physics runs on the new episode; `progress_buf` is 1 after it). Either
way a done env is re-initialised inside the NEXT `step`, and its reward there is computed on the new
episode's state. `RESET_IN` selects the order; the registry gives each task its own.
"""
import torch

from isaacgymenvs.tasks.base.vec_task import VecTask


class PointMassTask(VecTask):
    dt = 0.05
    RESET_IN = "pre_physics_step"  # or "post_physics_step"

    def __init__(self, cfg, rl_device, sim_device, graphics_device_id, headless, virtual_screen_capture, force_render):
        super().__init__(cfg, rl_device, sim_device, graphics_device_id, headless, virtual_screen_capture, force_render)
        state = self.sim["state"]  # lives in the (shared, per-process) sim, like Isaac Gym's tensors
        state["pos"] = torch.zeros((self.num_envs, self.num_actions), device=self.device)
        state["vel"] = torch.zeros_like(state["pos"])
        self.last_actions = torch.zeros_like(state["pos"])

    def reset_idx(self, env_ids):
        state = self.sim["state"]
        state["pos"][env_ids] = torch.rand((len(env_ids), self.num_actions), device=self.device) - 0.5
        state["vel"][env_ids] = 0.0
        self.progress_buf[env_ids] = 0
        self.reset_buf[env_ids] = 0

    def _reset_requested(self):
        env_ids = self.reset_buf.nonzero(as_tuple=False).squeeze(-1)
        if len(env_ids) > 0:
            self.reset_idx(env_ids)

    def pre_physics_step(self, actions):
        if self.RESET_IN == "pre_physics_step":
            self._reset_requested()
        self.last_actions = actions.clone()
        state = self.sim["state"]
        state["vel"] += self.dt * 20.0 * actions.to(self.device)
        state["pos"] += self.dt * state["vel"]

    def post_physics_step(self):
        self.progress_buf += 1
        if self.RESET_IN == "post_physics_step":
            self._reset_requested()
        state = self.sim["state"]
        pos, vel = state["pos"], state["vel"]
        features = torch.cat([pos, vel], dim=1)
        reps = -(-self.num_obs // features.shape[1])
        self.obs_buf[:] = 3.0 * features.repeat(1, reps)[:, : self.num_obs]  # scaled so clipping at 5 happens
        if self.num_states > 0:
            self.states_buf[:] = features.sum(dim=1, keepdim=True).repeat(1, self.num_states)
        self.rew_buf[:] = 1.0 - 0.5 * pos.square().sum(dim=1) - 0.01 * self.last_actions.square().sum(dim=1)
        out = pos.abs().max(dim=1).values > 1.0
        ones = torch.ones_like(self.reset_buf)
        self.reset_buf[:] = torch.where(out, ones, torch.zeros_like(self.reset_buf))
        self.reset_buf[:] = torch.where(self.progress_buf >= self.max_episode_length - 1, ones, self.reset_buf)


class PointMassResetInPost(PointMassTask):
    RESET_IN = "post_physics_step"
