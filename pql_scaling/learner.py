"""The two learner roles: the V-learner (critic) and the P-learner (policy).

Each owns its network and optimiser and *reads* the other's network: in `mode=sync` the very
module, in `mode=trio` a snapshot copied from shared memory. An update is sample -> normalise ->
loss -> step; statistics are summed on the device and read only at log points.
"""
import copy

import torch

from pql_scaling import algo


def make_optimizer(params, lr, weight_decay, device):
    """AdamW as one fused kernel where this torch has it (CUDA; CPU from torch 2.4), else multi-tensor.

    On CUDA, capturable keeps the step counter on the device: no host sync, and the step can be
    captured in a CUDA graph.
    """
    params = list(params)
    cuda = torch.device(device).type == "cuda"
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True, capturable=cuda)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True, capturable=cuda)


def normalised(batch, norm):
    return batch._replace(obs=norm(batch.obs), next_obs=norm(batch.next_obs))


def c51_support(algo_cfg, device):
    """The C51 atoms, or None for a scalar critic."""
    a = algo_cfg
    return torch.linspace(a.v_min, a.v_max, a.num_atoms, device=device) if a.distributional else None


class VLearner:
    def __init__(self, cfg, critic, actor_view, norm, device):
        a = cfg.algo
        self.cfg, self.critic, self.actor_view, self.norm = cfg, critic, actor_view, norm
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.opt = make_optimizer(critic.parameters(), a.critic_lr, a.weight_decay, device)
        self.params = list(critic.parameters())
        self.support = c51_support(a, device)
        self.sac = a.name == "sac"
        self.stats = torch.zeros(3, device=device)  # loss sum, q sum, count
        self.updates = 0

    def update(self, batch):
        a = self.cfg.algo
        loss, q = algo.critic_loss(self.actor_view, self.critic, self.critic_target, normalised(batch, self.norm),
                                   self.sac, a.target_noise, a.target_noise_clip, self.support)
        algo.step(loss, self.opt, self.params, a.grad_clip)
        algo.soft_update(self.critic_target, self.critic, a.tau)
        self.stats += torch.stack([loss.detach(), q.detach(), torch.ones_like(q)])
        self.updates += 1

    def pop_stats(self):
        loss, q, n = self.stats.tolist()
        self.stats.zero_()
        return {"critic_loss": loss / n, "q_mean": q / n} if n else {}

    def state_dict(self):
        return {"critic": self.critic.state_dict(), "critic_target": self.critic_target.state_dict(),
                "critic_opt": self.opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, s):
        self.critic.load_state_dict(s["critic"])
        self.critic_target.load_state_dict(s["critic_target"])
        self.opt.load_state_dict(s["critic_opt"])
        self.updates = s["updates"]


class PLearner:
    def __init__(self, cfg, actor, critic_view, norm, device, act_dim):
        a = cfg.algo
        self.cfg, self.actor, self.critic_view, self.norm = cfg, actor, critic_view, norm
        self.sac = a.name == "sac"
        self.target_entropy = float(-act_dim if a.target_entropy is None else a.target_entropy)
        net_params = [p for n, p in actor.named_parameters() if n != "log_alpha"]
        groups = [{"params": net_params}]
        if self.sac:
            groups.append({"params": [actor.log_alpha], "lr": a.alpha_lr, "weight_decay": 0.0})
        self.opt = make_optimizer(groups, a.actor_lr, a.weight_decay, device)
        self.params = net_params
        self.support = c51_support(a, device)
        self.stats = torch.zeros(3, device=device)  # loss sum, (entropy | mean |action|) sum, count
        self.updates = 0

    def update(self, batch):
        loss, aux = algo.actor_loss(self.actor, self.critic_view, normalised(batch, self.norm), self.sac,
                                    self.target_entropy, self.support)
        algo.step(loss, self.opt, self.params, self.cfg.algo.grad_clip)
        self.stats += torch.stack([loss.detach(), aux.detach(), torch.ones_like(aux)])
        self.updates += 1

    def pop_stats(self):
        loss, aux, n = self.stats.tolist()
        self.stats.zero_()
        if not n:
            return {}
        out = {"actor_loss": loss / n, ("entropy" if self.sac else "action_abs_mean"): aux / n}
        if self.sac:
            out["alpha"] = float(self.actor.log_alpha.detach().exp())
        return out

    def state_dict(self):
        return {"actor": self.actor.state_dict(), "actor_opt": self.opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, s):
        self.actor.load_state_dict(s["actor"])
        self.opt.load_state_dict(s["actor_opt"])
        self.updates = s["updates"]
