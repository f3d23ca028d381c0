"""Truncation vs termination through the real ActorRole and replay, with envs ending at different steps.

A scripted env makes every observation name itself: obs = (env, episode, step in episode, kind) with kind
0 for a live observation, 1 for a terminal one (only ever in final_obs) and 2 for the first one of an
episode. So each stored row says which observation it bootstraps from, and the reference below is
written from the contract: the n-step return stops at an episode end, bootstraps from final_obs with
gamma^k after a truncation and not at all after a termination, and a step marked invalid (a deferred
reset's spanning step) is stored with weight 0.
"""

import pytest
import torch

from pql_scaling import config as config_lib
from pql_scaling.core.replay import Normalizer, Replay
from pql_scaling.runtime.actor import ActorRole

GAMMA = 0.9
# per env: (step in episode at which it ends, terminated?) -- envs end at different steps, both ways
ENDS = [(4, True), (6, False), (3, False), (9, True)]


class ScriptedEnv:
    def __init__(self, deferred=False):
        self.num_envs, self.obs_dim, self.act_dim, self.device = len(ENDS), 4, 1, torch.device("cpu")
        self.max_episode_steps = 100
        self.deferred = deferred  # mark the step after an episode end invalid, as Isaac Gym's adapter does
        self.episode = [0] * self.num_envs
        self.t = [0] * self.num_envs
        self.prev_done = [False] * self.num_envs
        self.log = []  # (env, episode, t, reward, done, terminated, valid) per step

    def _obs(self, i, kind):
        return [float(i), float(self.episode[i]), float(self.t[i]), float(kind)]

    def reset(self):
        return torch.tensor([self._obs(i, 2) for i in range(self.num_envs)])

    def step(self, action):
        nxt, fin, rew, term, trunc, valid = [], [], [], [], [], []
        for i, (end, terminal) in enumerate(ENDS):
            self.t[i] += 1
            r = 10.0 * i + self.t[i] + 0.01 * self.episode[i]
            done = self.t[i] == end
            valid.append(not (self.deferred and self.prev_done[i]))
            self.log.append((i, self.episode[i], self.t[i], r, done, done and terminal, valid[-1]))
            fin.append(self._obs(i, 1 if done else 0))
            if done:
                self.episode[i] += 1
                self.t[i] = 0
                nxt.append(self._obs(i, 2))
            else:
                nxt.append(fin[-1])
            rew.append(r)
            term.append(done and terminal)
            trunc.append(done and not terminal)
            self.prev_done[i] = done
        info = {"final_obs": torch.tensor(fin)}
        if self.deferred:
            info["valid"] = torch.tensor(valid)
        return torch.tensor(nxt), torch.tensor(rew), torch.tensor(term), torch.tensor(trunc), info


def reference_rows(log, n, steps, num_envs):
    """Per (actor step s, env i), the n-step row that starts at step s, from the scripted log."""
    by_env = {i: [x for x in log if x[0] == i] for i in range(num_envs)}
    rows = {}
    for i, seq in by_env.items():
        for s in range(steps - n + 1):
            _, ep, t, r, done, term, valid = seq[s]
            ret, k = 0.0, 0
            while True:
                _, ep_k, t_k, r_k, done_k, term_k, _ = seq[s + k]
                ret += GAMMA**k * r_k
                if done_k or k == n - 1:
                    break
                k += 1
            kind = 1.0 if done_k else 0.0
            boot = [
                float(i),
                float(ep_k),
                float(t_k),
                kind,
            ]  # the observation after step s + k, terminal if it ended
            rows[s, i] = (ret, GAMMA ** (k + 1) * (0.0 if term_k else 1.0), boot, 1.0 if valid else 0.0)
    return rows


@pytest.mark.parametrize("nstep", [1, 3])
@pytest.mark.parametrize("deferred", [False, True])
def test_final_obs_discount_and_weight_of_every_stored_row(nstep, deferred):
    steps = 24
    cfg = config_lib.load(
        [
            "task=pendulum",
            "num_envs=%d" % len(ENDS),
            "algo.nstep=%d" % nstep,
            "algo.gamma=%s" % GAMMA,
            "algo.warmup_steps=1000",
            "algo.reward_scale=1.0",
        ]
    )
    env = ScriptedEnv(deferred)
    replay = Replay(len(ENDS) * steps, env.obs_dim, env.act_dim, len(ENDS), "cpu")
    actor = ActorRole(cfg, env, replay, Normalizer(env.obs_dim, "cpu", enabled=False), "cpu")
    for _ in range(steps):
        actor.step(None)
    want = reference_rows(env.log, nstep, steps, len(ENDS))
    n_rows = steps - nstep + 1
    assert replay.rows == n_rows * len(ENDS)
    d = {k: v[: replay.rows].reshape(n_rows, len(ENDS), *v.shape[1:]) for k, v in replay.data.items()}
    seen = {"truncated": 0, "terminated": 0, "invalid": 0}
    for (s, i), (ret, disc, boot, weight) in want.items():
        where = "row starting at step %d, env %d" % (s, i)
        assert d["reward"][s, i].item() == pytest.approx(ret, rel=1e-6), where
        assert d["discount"][s, i].item() == pytest.approx(disc, rel=1e-6, abs=1e-7), where
        assert d["next_obs"][s, i].tolist() == boot, where
        assert d["weight"][s, i].item() == weight, where
        assert d["obs"][s, i, 0].item() == i
        seen["truncated"] += boot[3] == 1.0 and disc > 0
        seen["terminated"] += boot[3] == 1.0 and disc == 0
        seen["invalid"] += weight == 0
    assert seen["truncated"] > 0 and seen["terminated"] > 0 and (seen["invalid"] > 0) == deferred, seen


def test_episode_statistics_count_only_valid_steps_and_reset_at_each_end():
    cfg = config_lib.load(
        ["task=pendulum", "num_envs=%d" % len(ENDS), "algo.nstep=1", "algo.warmup_steps=1000"]
    )
    env = ScriptedEnv()
    actor = ActorRole(cfg, env, Replay(1000, env.obs_dim, 1, len(ENDS), "cpu"), Normalizer(4, "cpu"), "cpu")
    for _ in range(18):
        actor.step(None)
    mean, std, episodes, length = actor.pop_stats()
    ended = [x for x in env.log if x[4]]
    rets = [sum(y[3] for y in env.log if y[0] == e[0] and y[1] == e[1]) for e in ended]
    lens = [e[2] for e in ended]
    assert episodes == len(ended)
    assert mean == pytest.approx(sum(rets) / len(rets), rel=1e-5)
    assert length == pytest.approx(sum(lens) / len(lens))
    assert std == pytest.approx(torch.tensor(rets).std(unbiased=False).item(), rel=1e-3)
