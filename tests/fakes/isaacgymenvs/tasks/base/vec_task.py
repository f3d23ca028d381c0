"""Stand-in for IsaacGymEnvs' VecTask: the documented step/reset semantics over torch buffers."""
import torch

from isaacgym import gymapi

EXISTING_SIM = None  # only one simulation per process: the first one is cached and handed out again


def _create_sim_once(gym, compute_device, graphics_device, physics_engine, sim_params):
    global EXISTING_SIM
    if EXISTING_SIM is None:
        EXISTING_SIM = gym.create_sim(compute_device, graphics_device, physics_engine, sim_params)
    return EXISTING_SIM


class Box:
    def __init__(self, low, high, shape):
        self.low, self.high, self.shape = low, high, shape


class VecTask:
    def __init__(self, config, rl_device, sim_device, graphics_device_id, headless, virtual_screen_capture=False,
                 force_render=False):
        env = config["env"]
        self.cfg = config
        self.device = sim_device if sim_device.startswith("cuda") else "cpu"
        self.rl_device = rl_device
        self.num_envs = env["numEnvs"]
        self.num_obs = env["numObservations"]
        self.num_states = env.get("numStates", 0)
        self.num_actions = env["numActions"]
        self.max_episode_length = env["episodeLength"]
        self.clip_actions = env.get("clipActions", 1.0)
        self.clip_obs = env.get("clipObservations", float("inf"))
        self.observation_space = Box(float("-inf"), float("inf"), (self.num_obs,))
        self.state_space = Box(float("-inf"), float("inf"), (self.num_states,))
        self.action_space = Box(-1.0, 1.0, (self.num_actions,))
        self.gym = gymapi.acquire_gym()
        self.sim = _create_sim_once(self.gym, 0, graphics_device_id, gymapi.SIM_PHYSX, None)
        n, dev = self.num_envs, self.device
        self.obs_buf = torch.zeros((n, self.num_obs), device=dev)
        self.states_buf = torch.zeros((n, self.num_states), device=dev)
        self.rew_buf = torch.zeros(n, device=dev)
        self.reset_buf = torch.ones(n, device=dev, dtype=torch.long)
        self.timeout_buf = torch.zeros(n, device=dev, dtype=torch.long)
        self.progress_buf = torch.zeros(n, device=dev, dtype=torch.long)
        self.extras = {}
        self.obs_dict = {}
        self.control_steps = 0

    @property
    def num_acts(self):
        return self.num_actions

    def step(self, actions):
        action_tensor = torch.clamp(actions, -self.clip_actions, self.clip_actions)
        self.pre_physics_step(action_tensor)  # performs the resets requested by the previous step
        self.post_physics_step()
        self.control_steps += 1
        self.timeout_buf = (self.progress_buf >= self.max_episode_length - 1) & (self.reset_buf != 0)
        self.extras["time_outs"] = self.timeout_buf.to(self.rl_device)
        self.obs_dict["obs"] = torch.clamp(self.obs_buf, -self.clip_obs, self.clip_obs).to(self.rl_device)
        if self.num_states > 0:
            self.obs_dict["states"] = self.get_state()
        return self.obs_dict, self.rew_buf.to(self.rl_device), self.reset_buf.to(self.rl_device), self.extras

    def get_state(self):
        return torch.clamp(self.states_buf, -self.clip_obs, self.clip_obs).to(self.rl_device)

    def reset(self):
        """Resets nothing: returns the current observations (reset_buf starts at ones instead)."""
        self.obs_dict["obs"] = torch.clamp(self.obs_buf, -self.clip_obs, self.clip_obs).to(self.rl_device)
        if self.num_states > 0:
            self.obs_dict["states"] = self.get_state()
        return self.obs_dict
