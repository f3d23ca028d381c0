"""The roles of one run, built for its config and env: the actor, the V-learner and P-learner (in trio mode
the main process's mirrors of the spawned ones), the observation normaliser and the replay; and the run's
facts."""

import shutil
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from pql_scaling import config as config_lib
from pql_scaling import tasks
from pql_scaling.config import Config
from pql_scaling.core import nets
from pql_scaling.core.members import Streams
from pql_scaling.core.replay import Normalizer, Replay
from pql_scaling.envs.contract import VecEnv, critic_obs_dim
from pql_scaling.rundir.disk import log
from pql_scaling.rundir.replay_store import ReplayStore
from pql_scaling.rundir.rundir import RunDir
from pql_scaling.runtime import resources
from pql_scaling.runtime.actor import ActorRole
from pql_scaling.runtime.learner import PLearner, VLearner


@dataclass
class Roles:
    actor_net: torch.nn.Module  # the policy (the P-learner trains it, the actor acts with it)
    critic: torch.nn.Module  # the critic (the V-learner trains it)
    norm: Normalizer
    replay: Replay
    replay_store: Optional[ReplayStore]  # save_replay: the replay's segments beside the checkpoints
    v_learner: VLearner
    p_learner: PLearner
    actor: Any  # an ActorRole (tests put a fake in its place)
    actor_device: torch.device
    learning_starts: int  # rows in replay before the learners are owed updates
    flops_critic: int  # per critic update
    flops_policy: int  # per policy update


def build_roles(cfg: Config, env: VecEnv, run: RunDir) -> Roles:
    """Build every role on its device (the order fixes what the seeded RNG draws: nets, then the actor's
    noise)."""
    a, device = cfg.algo, torch.device(cfg.device)
    # trio placement: the actor (policy copy, normaliser) on actor_device, the replay on the V-learner's
    # device; the learners here are the main process's mirrors of the spawned ones (see runtime/trio)
    trio = cfg.mode == "trio"
    actor_device = torch.device(cfg.actor_device or cfg.device) if trio else device
    replay_device = torch.device(cfg.v_learner_device or cfg.device) if trio else device
    # a population (population.size = K > 1): every role holds K members, stacked (core/members.py)
    seeds, vary = config_lib.member_seeds(cfg), config_lib.member_values(cfg)
    k, cpu_states = len(seeds), None
    c_dim = critic_obs_dim(env)  # > 0: an asymmetric critic, its own inputs, normaliser and replay fields
    if k == 1:
        actor_net, critic = nets.build(cfg, env.obs_dim, env.act_dim, c_dim)
    else:
        actor_net, critic, cpu_states = nets.build_population(cfg, env.obs_dim, env.act_dim, seeds, c_dim)
    actor_net, critic = actor_net.to(actor_device), critic.to(device)
    streams = Streams(seeds, device, cpu_states)
    if k > 1 and hasattr(actor_net, "randn_like"):  # SAC: the policy's noise from each member's stream
        actor_net.randn_like = streams.randn_like
    norm = Normalizer(env.obs_dim, actor_device, a.obs_clip, enabled=a.obs_norm, members=k, critic_dim=c_dim)
    replay = Replay(
        a.buffer_size, env.obs_dim, env.act_dim, env.num_envs, replay_device, members=k, critic_obs_dim=c_dim
    )
    store = _replay_store(cfg, env, run, replay) if cfg.save_replay else None
    v_learner = VLearner(cfg, critic, actor_net, norm, device, streams, vary)
    p_learner = PLearner(cfg, actor_net, critic, norm, actor_device, env.act_dim, streams, vary)
    actor = ActorRole(cfg, env, replay, norm, actor_device, streams=streams, vary=vary)
    batch_size = max(vary.get("algo.batch_size", [a.batch_size]))
    flops_critic, flops_policy = nets.update_flops(actor_net, critic, a.batch_size)
    return Roles(
        actor_net,
        critic,
        norm,
        replay,
        store,
        v_learner,
        p_learner,
        actor,
        actor_device,
        max(a.learning_starts, batch_size),
        flops_critic,
        flops_policy,
    )


def _replay_store(cfg: Config, env: VecEnv, run: RunDir, replay: Replay) -> Optional[ReplayStore]:
    need = 1.5 * replay.capacity * resources.replay_row_bytes(env.obs_dim, env.act_dim, critic_obs_dim(env))
    free = shutil.disk_usage(run.ckpt_dir).free
    if need < 0.5 * free:
        return ReplayStore(run.ckpt_dir, replay.capacity)
    log.warning(
        "save_replay: the replay's segments would take up to %.1f GB, more than half of the %.1f GB "
        "free in %s; checkpoints hold no replay (a resume refills it)",
        need / 1e9,
        free / 1e9,
        run.ckpt_dir,
    )
    return None


def describe(cfg: Config, env: VecEnv, roles: Roles) -> Dict[str, Any]:
    """The run's facts (run.json): what was trained, at what size and cost per update."""
    a, actor_net, critic = cfg.algo, roles.actor_net, roles.critic
    if getattr(critic, "members", 1) > 1:  # a population: the facts of one member
        with torch.random.fork_rng(devices=[]):
            actor_net, critic = nets.build(cfg, env.obs_dim, env.act_dim, critic_obs_dim(env))
    return {
        "task": cfg.task,
        "backend": getattr(env, "backend", cfg.backend or "native"),
        "algo": a.name,
        "seed": cfg.seed,
        "num_envs": env.num_envs,
        "utd": a.critic_updates_per_step / env.num_envs,
        "batch_size": a.batch_size,
        "critic_lr": a.critic_lr,
        "actor_lr": a.actor_lr,
        "critic_params": nets.count_params(critic),
        "actor_params": nets.count_params(actor_net),
        "flops_per_critic_update": roles.flops_critic,
        "flops_per_policy_update": roles.flops_policy,
        "flops_convention": "matmuls 2*m*n*k (backward exact per layer) + bias adds forward "
        "(pql_scaling/core/nets.py)",
        **nets.facts(cfg, actor_net, critic),
        "r_max": cfg.r_max,
        "obs_dim": env.obs_dim,
        "critic_obs_dim": critic_obs_dim(env),  # 0: the critic reads the policy's observation
        "act_dim": env.act_dim,
        "mode": cfg.mode,
        "device": cfg.device,
        "defaults": tasks.display_path(config_lib.defaults_for([], cfg)),
    }
