"""A population member's checkpoint: its slice of the stacked state, in a single run's checkpoint format (so
`resume=<member dir>` continues it alone), and back (a population resumes by stacking its members' slices)."""

import os
from fractions import Fraction
from typing import Any, Dict

import torch

from pql_scaling import config as config_lib
from pql_scaling.rundir.disk import read_checkpoint
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime.checkpoint import check_critic_obs


def _rows(t: torch.Tensor, k: int, members: int, dim: int = 0) -> torch.Tensor:
    """Member k's block of a member-major dimension."""
    n = t.shape[dim] // members
    return t.narrow(dim, k * n, n).clone()


def _net_slice(sd: Dict[str, torch.Tensor], k: int, members: int) -> Dict[str, torch.Tensor]:
    # SAC's log alpha is (K,) in a population, a scalar in a single run
    return {name: (t[k].clone() if name == "log_alpha" else _rows(t, k, members)) for name, t in sd.items()}


def _opt_slice(sd: Dict[str, Any], k: int, members: int, lr: float) -> Dict[str, Any]:
    net = set(sd["param_groups"][0]["params"])  # the network's group; another is SAC's temperature, (K,)

    def cut(i: int, name: str, t: torch.Tensor) -> torch.Tensor:
        if name == "step":
            return t.clone()
        return _rows(t, k, members) if i in net else t[k].clone()

    state = {i: {n: cut(i, n, t) for n, t in st.items()} for i, st in sd["state"].items()}
    groups = [dict(g, lr=lr) if j == 0 else dict(g) for j, g in enumerate(sd["param_groups"])]
    return {"state": state, "param_groups": groups}


def member_state(pop: Any, m: Any) -> Dict[str, Any]:
    """Member m's slice of the population's state, as a single run with its config checkpoints it (so
    `resume=` continues the member alone, and a population resumes by stacking its members' slices)."""
    k, K, r = m.k, pop.k, pop.roles
    v, p, actor, env = r.v_learner, r.p_learner, r.actor, pop.env
    f = actor.folder
    window = {"t": f.t}
    for name in ("obs", "action", "next_obs", "reward", "terminated", "done", "valid"):
        window[name] = _rows(getattr(f, name), k, K, dim=1)
    streams = actor.streams
    rng = torch.get_rng_state() if k == 0 or streams.device.type != "cpu" else streams.gens[k].get_state()
    counters = dict(m.counters, wall_time_s=m.clock.wall_time())
    fractions = {n: [x.numerator, x.denominator] for n, x in pop.counters.items() if hasattr(x, "numerator")}
    out = {
        "v_learner": {
            "critic": _net_slice(v.critic.state_dict(), k, K),
            "critic_target": _net_slice(v.critic_target.state_dict(), k, K),
            "critic_opt": _opt_slice(v.opt.state_dict(), k, K, float(m.cfg.algo.critic_lr)),
            "updates": v.updates,
        },
        "p_learner": {
            "actor": _net_slice(p.actor.state_dict(), k, K),
            "actor_opt": _opt_slice(p.opt.state_dict(), k, K, float(m.cfg.algo.actor_lr)),
            "updates": p.updates,
        },
        "norm": _norm_slice(r.norm, k),
        "actor": {
            "steps": actor.steps,
            "ep_return": _rows(actor.ep_return, k, K),
            "ep_length": _rows(actor.ep_length, k, K),
            "obs": _rows(actor.obs, k, K),
            "noise": _rows(actor.noise, k, K),
            "folder": window,
            **({"critic_obs": _rows(actor.critic_obs, k, K)} if actor.critic_dim else {}),
        },
        "counters": {n: x for n, x in counters.items() if not hasattr(x, "numerator")},
        "fractions": fractions,
        "rng": {"torch": rng, "cuda": None},
        "replay_rows": r.replay.rows,
        "replay_saved": False,
    }
    if hasattr(env, "member_state_dict"):  # a single run's env state_dict: its envs and resets' generator
        out["env"] = env.member_state_dict(k)  # (Isaac Gym cannot save its state: none, as its single run's)
    return out


def _norm_slice(norm: Any, k: int) -> Dict[str, torch.Tensor]:
    """Member k's statistics in a single run's Normalizer.state_dict() format (the critic's as `critic.*`)."""
    out = {"mean": norm.mean[k, 0].clone(), "var": norm.var[k, 0].clone(), "count": norm.count.clone()}
    if norm.critic is not None:
        out.update({"critic." + n: t for n, t in _norm_slice(norm.critic, k).items()})
    return out


def _put_rows(dst: torch.Tensor, src: torch.Tensor, k: int, members: int, dim: int = 0) -> None:
    n = dst.shape[dim] // members
    dst.narrow(dim, k * n, n).copy_(src)


def _load_net(module: torch.nn.Module, sd: Dict[str, torch.Tensor], k: int, members: int) -> None:
    with torch.no_grad():
        for name, t in module.state_dict().items():
            _put_rows(t, sd[name], k, members)


def _load_opt(opt: torch.optim.Optimizer, sd: Dict[str, Any], k: int, members: int) -> None:
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, st in sd["state"].items():
        own = opt.state[params[int(i)]]
        for name, t in st.items():
            if name == "step":
                own[name].copy_(t)
            else:
                _put_rows(own[name], t, k, members)


def load_member_state(pop: Any, m: Any, s: Dict[str, Any]) -> None:
    """Member m's checkpoint (a single run's format) into its slice of the population (member_state's
    inverse)."""
    k, K, r = m.k, pop.k, pop.roles
    v, p, actor, env = r.v_learner, r.p_learner, r.actor, pop.env
    check_critic_obs(s, r.norm, m.run.path)
    _load_net(v.critic, s["v_learner"]["critic"], k, K)
    _load_net(v.critic_target, s["v_learner"]["critic_target"], k, K)
    _load_opt(v.opt, s["v_learner"]["critic_opt"], k, K)
    _load_net(p.actor, s["p_learner"]["actor"], k, K)
    _load_opt(p.opt, s["p_learner"]["actor_opt"], k, K)
    v.updates, p.updates = s["v_learner"]["updates"], s["p_learner"]["updates"]
    for prefix, norm in (("", r.norm), ("critic.", r.norm.critic)):
        if (
            norm is not None
        ):  # a privileged critic observation's own statistics (check_critic_obs: both or none)
            norm.mean[k, 0].copy_(s["norm"][prefix + "mean"])
            norm.var[k, 0].copy_(s["norm"][prefix + "var"])
            norm.count.copy_(s["norm"][prefix + "count"])
    a = s["actor"]
    actor.steps = a["steps"]
    if env_restorable(env, s):
        _load_episodes(actor, a, k, K)
        env.load_member_state_dict(k, s["env"])
    # else (Isaac Gym cannot save its state): the member keeps the new episodes env.reset() started, as a single
    # run's resume does (ActorRole.load_state_dict(episodes=False))
    if k == 0:
        torch.set_rng_state(s["rng"]["torch"])
    elif actor.streams.device.type == "cpu":
        actor.streams.gens[k].set_state(s["rng"]["torch"])
    m.counters.update(s["counters"])
    pop.counters.update({n: Fraction(a_, b) for n, (a_, b) in s["fractions"].items()})


def _load_episodes(actor: Any, a: Dict[str, Any], k: int, members: int) -> None:
    """Member k's episodes in flight: the actor's observation, episode sums, noise and n-step window."""
    for name in ("ep_return", "ep_length", "obs", "noise") + (("critic_obs",) if actor.critic_dim else ()):
        _put_rows(getattr(actor, name), a[name].to(actor.device), k, members)
    actor.folder.t = a["folder"]["t"]
    for name, t in a["folder"].items():
        if name != "t":
            _put_rows(getattr(actor.folder, name), t.to(actor.device), k, members, dim=1)


def env_restorable(env: Any, s: Dict[str, Any]) -> bool:
    """A member's envs continue from its checkpoint (else, Isaac Gym: the resumed member starts new episodes)."""
    return "env" in s and hasattr(env, "load_member_state_dict")


def checkpoint_at(run: RunDir, last: Dict[str, Any], steps: int) -> Dict[str, Any]:
    """The member's checkpoint taken at `steps` actor steps: `last` (its newest, loaded already), else prev.pt."""
    if last["actor"]["steps"] == steps:
        return last
    if os.path.exists(run.prev_checkpoint_path):
        prev = read_checkpoint(run.prev_checkpoint_path, "cpu")
        if prev["actor"]["steps"] == steps:
            return prev
    raise config_lib.ConfigError(
        "%s has no checkpoint at actor step %d, where the population's other members are: it cannot resume "
        "with them; resume it alone with resume=%s" % (run.path, steps, run.path)
    )
