"""FLOPs per update, measured by torch's FlopCounterMode on a real update, against run.json's counts.

FlopCounterMode counts matrix multiplies only (2 per multiply-add) and only the backward matmuls autograd
really runs. Our convention (pql_scaling/core/nets.py) counts the same matmuls, each layer's backward exactly as
autograd runs it (no input gradient for a net's first layer in its own update, no weight gradients for the
critic inside the actor loss), plus the bias adds of every forward pass. So run.json must exceed the
measurement by exactly those biases: actor once and critic twice (target, online) in a critic update,
actor once and critic once in a policy update.
"""

import json
import os

import torch
from torch.utils.flop_counter import FlopCounterMode

from pql_scaling import config as config_lib
from pql_scaling.core import nets
from pql_scaling.core.losses import Batch
from pql_scaling.core.replay import Normalizer
from pql_scaling.runtime.learner import PLearner, VLearner
from pql_scaling.runtime.train import train


def measured(fn):
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def biases(module):
    return sum(p.numel() for n, p in module.named_parameters() if n.endswith("bias"))


def test_run_json_flops_match_flopcountermode_on_real_updates(tmp_path):
    B = 128
    args = [
        "task=pendulum",
        "mode=sync",
        "num_envs=8",
        "algo.batch_size=%d" % B,
        "net.actor_hidden=[64,32]",
        "net.critic_hidden=[48,40]",
        "max_env_steps=160",
        "log.every_steps=20",
        "threads=1",
        "log.live=off",
        "run_dir=%s" % (tmp_path / "r"),
    ]
    facts = json.load(open(os.path.join(train(args, quiet=True), "run.json")))
    cfg = config_lib.load(args[:-1])
    actor, critic = nets.build(cfg, 3, 1)
    norm = Normalizer(3, "cpu")
    v, p = VLearner(cfg, critic, actor, norm, "cpu"), PLearner(cfg, actor, critic, norm, "cpu", 1)
    g = torch.Generator().manual_seed(0)
    b = Batch(
        torch.randn(B, 3, generator=g),
        torch.rand(B, 1, generator=g) * 2 - 1,
        torch.randn(B, generator=g),
        torch.randn(B, 3, generator=g),
        torch.full((B,), 0.9),
        torch.ones(B),
    )
    critic_update, policy_update = measured(lambda: v.update(b)), measured(lambda: p.update(b))
    assert critic_update > 0 and policy_update > 0
    # the gaps our convention adds, per sample (see the module docstring)
    gap_critic = biases(actor) + 2 * biases(critic)
    gap_policy = biases(actor) + biases(critic)
    assert facts["flops_per_critic_update"] == critic_update + B * gap_critic
    assert facts["flops_per_policy_update"] == policy_update + B * gap_policy
