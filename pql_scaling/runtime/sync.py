"""`mode=sync`: actor, V-learner and P-learner interleaved in one process, deterministic for a seed.

The ratios are exact: after every actor step the V-learner is owed `critic_updates_per_step`
updates and, after each of those, the P-learner `policy_updates_per_critic_update`; the debts are
kept as exact fractions, so a ratio such as 1/3 never drifts.

Every role lives in this process, so sync mode needs none of the Session's runtime hooks (session.Runtime's
no-ops stay attached).
"""

import time
from fractions import Fraction

from pql_scaling.runtime.session import Session


def run(s: Session) -> None:
    cfg = s.cfg
    critic_per_step = Fraction(str(cfg.algo.critic_updates_per_step))
    policy_per_critic = Fraction(str(cfg.algo.policy_updates_per_critic_update))
    critic_owed = s.counters.get("critic_owed", Fraction(0))
    policy_owed = s.counters.get("policy_owed", Fraction(0))
    actor, v, p, replay = s.actor, s.v_learner, s.p_learner, s.replay
    s.started()
    try:
        # a stop signal is raised by should_stop(), between two steps: the debts below always match the
        # updates done, so the checkpoint written on the way out resumes with nothing lost or paid twice
        while not s.should_stop():
            actor.step(p.actor)
            if replay.size >= s.learning_starts:
                critic_owed += critic_per_step
                while critic_owed >= 1:
                    v.learn(replay)
                    critic_owed -= 1
                    policy_owed += policy_per_critic
                    while policy_owed >= 1:
                        p.learn(replay)
                        policy_owed -= 1
            if actor.steps % cfg.log.every_steps == 0:
                s.counters.update(critic_owed=critic_owed, policy_owed=policy_owed)
                s.log_point(time.monotonic())
    finally:
        s.counters.update(critic_owed=critic_owed, policy_owed=policy_owed)
