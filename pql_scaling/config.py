"""The training config: one typed schema, per-task YAML defaults, `key=value` overrides.

Resolution order (later wins): schema defaults < the task's YAML < command-line overrides. The YAML is
picked by task, backend and device (tasks.defaults_path): native tasks read tasks/<task>.yaml on the CPU
and tasks/gpu/<task>.yaml with device=cuda.
OmegaConf's structured configs give type checking and reject unknown keys; we add range checks and
an error message that names the key and the closest valid keys, before anything runs.
"""

import functools
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from pql_scaling import env_spec, population_spec, specs, tasks
from pql_scaling.env_spec import MAPPINGS, GymnasiumConfig, env_options  # noqa: F401
from pql_scaling.population_spec import VARY_KEYS, member_seeds, member_values  # noqa: F401
from pql_scaling.specs import (  # noqa: F401
    choice,
    flatten,
    non_negative,
    positive,
    read_spec,
    set_dotted,
    spec_keys,
    unit_interval,
)


@dataclass
class AlgoConfig:
    name: str = choice("pql", "pql", "sac")  # pql: deterministic actor, twin critics (R4); sac (R1's studies)
    critic_updates_per_step: float = positive(8.0)  # PQL's beta_a:v; UTD sigma = this / num_envs
    policy_updates_per_critic_update: float = non_negative(0.5)  # PQL's beta_p:v
    batch_size: int = positive(8192)
    critic_lr: float = positive(5e-4)
    actor_lr: float = positive(5e-4)
    weight_decay: float = non_negative(0.0)  # AdamW decoupled weight decay
    grad_clip: float = non_negative(0.5)  # max grad norm, 0 = off
    gamma: float = unit_interval(0.99)
    tau: float = unit_interval(0.05)  # soft target update rate
    nstep: int = positive(3)
    buffer_size: int = positive(5_000_000)  # transitions
    warmup_steps: int = non_negative(32)  # actor steps with uniform random actions
    learning_starts: int = non_negative(0)  # transitions in replay before updates (at least batch_size)
    noise_std_min: float = non_negative(0.05)  # mixed exploration: env i gets std linspace(min, max)[i]
    noise_std_max: float = non_negative(0.8)
    noise_corr: float = 0.0  # AR(1) coefficient of the exploration noise in time: 0 = PQL's white noise
    target_noise: float = non_negative(0.8)  # target-policy smoothing std (R4's tgt_pol_std)
    target_noise_clip: float = non_negative(0.2)  # ... clipped to this bound (R4's tgt_pol_noise_bound)
    reward_scale: float = positive(1.0)
    obs_norm: bool = True
    obs_clip: float = 5.0
    distributional: bool = False  # C51 critic
    num_atoms: int = positive(51)
    v_min: float = -10.0
    v_max: float = 10.0
    init_alpha: float = non_negative(1.0)  # sac: initial entropy temperature
    alpha_lr: float = non_negative(3e-4)  # sac
    target_entropy: Optional[float] = None  # sac: default -act_dim


@dataclass
class NetConfig:
    actor_hidden: List[int] = field(default_factory=lambda: [512, 256, 128])
    critic_hidden: List[int] = field(default_factory=lambda: [512, 256, 128])
    activation: str = choice("elu", "elu", "relu", "silu", "tanh", "gelu")
    layer_norm: bool = False
    # bro: BroNet residual blocks; softmoe: a Soft MoE penultimate layer
    critic_arch: str = choice("mlp", "mlp", "bro", "softmoe")
    actor_arch: str = choice("mlp", "mlp", "bro")
    critic_width: Optional[int] = positive(
        None
    )  # set: hidden = [width] * depth replaces critic_hidden (scales N by one key)
    critic_depth: Optional[int] = positive(
        None
    )  # mlp/softmoe: dense layers (default 2); bro: residual blocks + 1
    actor_width: Optional[int] = positive(None)
    actor_depth: Optional[int] = positive(None)
    experts: int = positive(4)  # softmoe
    slots_per_expert: int = positive(2)  # softmoe
    tokens: int = positive(8)  # softmoe: the width is cut into this many tokens of width / tokens
    expert_hidden: Optional[int] = positive(
        None
    )  # softmoe: each expert's hidden width; default width / tokens
    moe_norm: bool = True  # softmoe: L2-normalise tokens and Phi, learned logit scale


@dataclass
class LogConfig:
    every_steps: int = positive(100)  # actor steps between log points (a host sync happens only here)
    checkpoint_every_s: float = non_negative(
        120.0
    )  # a preempted run loses at most this much work (plus prev.pt kept)
    live: str = choice("auto", "auto", "rich", "plain", "off")
    console_every_s: float = positive(10.0)  # without a terminal: one progress line this often


@dataclass
class EvalConfig:
    every_steps: int = non_negative(
        0
    )  # env steps between evaluations of the deterministic policy, 0 = off (pql_scaling/runtime/evaluate.py)
    episodes: int = positive(16)  # noise-free episodes per evaluation, one per eval env
    max_steps: int = positive(1000)  # step cap of one evaluation when the env declares no max_episode_steps


@dataclass
class WandbConfig:
    mode: str = choice("disabled", "online", "offline", "disabled")
    project: str = "pql-scaling"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    name: Optional[str] = None
    init_timeout_s: float = non_negative(
        60.0
    )  # W&B gets this long to come up (in the background); then it is off for the run


@dataclass
class PerfConfig:
    # off: the eager update (the deterministic reference); reduce-overhead: CUDA graphs
    compile: str = choice("off", "off", "default", "max-autotune", "reduce-overhead")
    amp: str = choice("off", "off", "bf16")  # bf16: autocast forward and backward; fp32 weights, AdamW state
    tf32: bool = False  # CUDA: TF32 matmuls (fp32 storage, 10-bit mantissa products)
    publish_every: int = positive(
        1
    )  # trio: a learner publishes its weights every k updates (the readers' staleness)


@dataclass
class PopulationConfig:
    # K agents trained as one batch in one process, each its own run directory (runtime/population.py)
    size: int = positive(1)
    seeds: Optional[List[int]] = None  # default: seed, seed+1, ..., seed+K-1
    vary: Dict[str, Any] = field(default_factory=dict)  # {key in VARY_KEYS: [K values]}
    run_dirs: Optional[List[str]] = (
        None  # each member's run directory (a sweep's); default run_dir/m<k>-s<seed>
    )


@dataclass
class Config:
    task: str = "pendulum"
    backend: Optional[str] = None  # None = the task's own backend
    # trio: actor + V-learner + P-learner processes (R4); sync: one process, deterministic for a seed
    mode: str = choice("trio", "sync", "trio")
    seed: int = 0
    device: str = "cpu"
    actor_device: Optional[str] = None  # trio placement; None = device
    v_learner_device: Optional[str] = None
    p_learner_device: Optional[str] = None
    num_envs: int = positive(64)
    max_env_steps: Optional[int] = positive(
        1_000_000
    )  # None = no step cap (a time budget governs, as in PQL)
    max_time_s: float = non_negative(0.0)  # wall-clock budget, 0 = none
    target_return: Optional[float] = None  # stop at the first log point whose return_mean reaches this
    threads: int = non_negative(0)  # torch intra-op threads, 0 = torch's default
    run_dir: Optional[str] = None  # default: runs/<task>-<algo>-s<seed>-<time>
    resume: Optional[str] = None  # a run directory to continue
    r_max: Optional[float] = None  # the task's max return, for analysis normalisation
    save_replay: bool = (
        True  # checkpoints keep the replay as append-only segments (off by itself if the disk is short)
    )
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    net: NetConfig = field(default_factory=NetConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    perf: PerfConfig = field(default_factory=PerfConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    # the env constructor's keyword arguments, e.g. {max_episode_steps: 500, g: 9.81} (env_spec.py: per backend)
    env_kwargs: Dict[str, Any] = field(default_factory=dict)
    gymnasium: GymnasiumConfig = field(default_factory=GymnasiumConfig)  # backend=gymnasium's vector modes


_CONSTRAINTS = specs.constraints(Config)
CHOICES = {k: m["choices"] for k, m in _CONSTRAINTS.items() if "choices" in m}
POSITIVE = tuple(k for k, m in _CONSTRAINTS.items() if m.get("check") == "positive")
NON_NEGATIVE = tuple(k for k, m in _CONSTRAINTS.items() if m.get("check") == "non_negative")
UNIT_INTERVAL = tuple(k for k, m in _CONSTRAINTS.items() if m.get("check") == "unit_interval")


class ConfigError(ValueError):
    pass


# backends whose simulator allows one simulation per process (no separate eval batch): backend -> its name
ONE_SIM_PER_PROCESS = {"isaacgym": "Isaac Gym", "isaaclab": "Isaac Lab"}


@functools.lru_cache(maxsize=None)
def _field_types(cls=Config, prefix=""):
    """{dotted key: annotated type} for every leaf of the schema (fixed, so computed once)."""
    out = {}
    for f in fields(cls):
        default = (
            f.default_factory()
            if f.default_factory is not MISSING and callable(f.default_factory)
            else f.default
        )
        if is_dataclass(default):
            out.update(_field_types(type(default), prefix + f.name + "."))
        else:
            out[prefix + f.name] = f.type
    return out


def all_keys():
    return list(_field_types())


def closest(key, valid=None):
    """The training config's "did you mean" (specs.closest over every key of the schema)."""
    return specs.closest(key, all_keys() if valid is None else valid)


def _unknown_key_error(key, source):
    close = closest(key)
    hint = ("; did you mean: " + ", ".join(close)) if close else ""
    return ConfigError(
        "unknown config key %r (from %s)%s. `pql-scale train --help-keys` lists every key."
        % (key, source, hint)
    )


def parse_overrides(args):
    """['a.b=1', 'task=ant'] -> list of (key, python value). Values are parsed as YAML scalars/lists."""
    out = []
    for arg in args:
        key, value = specs.parse_assignment(
            arg,
            ConfigError,
            "task=pendulum num_envs=256 algo.batch_size=4096",
            keep_raw=lambda k: _field_types().get(k) in (str, Optional[str]),
        )  # `log.live=off`, `run_dir=2024`
        if key == "algo" and isinstance(value, str):  # `algo=sac` picks the algorithm
            key = "algo.name"
        out.append((key, value))
    return out


def _set(cfg, key, value, source):
    if key.startswith("env_kwargs.") and len(key) > 11:  # one constructor argument: env_kwargs.g=9.81
        key, value = "env_kwargs", {**cfg.env_kwargs, key[11:]: value}
    if key not in all_keys():
        raise _unknown_key_error(key, source)
    try:
        OmegaConf.update(cfg, key, value, merge=False)
    except (OmegaConfBaseException, ConfigKeyError, ValueError) as e:
        expected = OmegaConf.get_type(cfg, key.rsplit(".", 1)[0]) if "." in key else Config
        ftype = {f.name: f.type for f in fields(expected)}.get(key.rsplit(".", 1)[-1], "?")
        raise ConfigError(
            "bad value %r for %s (from %s): expected %s. %s"
            % (value, key, source, getattr(ftype, "__name__", ftype), str(e).splitlines()[0])
        )


def validate(cfg):
    def get(k):
        return OmegaConf.select(cfg, k)

    for key, options in CHOICES.items():
        if get(key) not in options:
            raise ConfigError("%s=%r is not one of %s" % (key, get(key), ", ".join(options)))
    if get("max_env_steps") is None and not get("max_time_s") and get("target_return") is None:
        raise ConfigError("max_env_steps=null needs a stop condition: set max_time_s or target_return")
    for key in POSITIVE:
        if get(key) is not None and not get(key) > 0:
            raise ConfigError("%s=%r must be > 0" % (key, get(key)))
    for key in NON_NEGATIVE:
        if not get(key) >= 0:
            raise ConfigError("%s=%r must be >= 0" % (key, get(key)))
    for key in UNIT_INTERVAL:
        if not 0 < get(key) <= 1:
            raise ConfigError("%s=%r must be in (0, 1]" % (key, get(key)))
    if not 0 <= get("algo.noise_corr") < 1:
        raise ConfigError(
            "algo.noise_corr=%r must be in [0, 1): 0 is white noise, 0.9 keeps ~10 steps of memory"
            % get("algo.noise_corr")
        )
    if get("algo.noise_std_min") > get("algo.noise_std_max"):
        raise ConfigError("algo.noise_std_min must be <= algo.noise_std_max")
    if get("algo.v_min") >= get("algo.v_max"):
        raise ConfigError("algo.v_min must be < algo.v_max")
    if get("algo.buffer_size") < get("num_envs") * (get("algo.nstep") + 1):
        raise ConfigError(
            "algo.buffer_size=%d is too small for num_envs=%d; make it at least %d"
            % (get("algo.buffer_size"), get("num_envs"), get("num_envs") * (get("algo.nstep") + 1))
        )
    if get("algo.distributional") and get("algo.name") == "sac":
        raise ConfigError("algo.distributional=true is only implemented for algo.name=pql")
    if get("eval.every_steps") and get("backend") in ONE_SIM_PER_PROCESS:
        raise ConfigError(
            "eval.every_steps>0 is not available with backend=%s: %s allows one simulation "
            "per process, so there is no separate eval batch; set eval.every_steps=0 (the analysis "
            "then fits the training return_mean)" % (get("backend"), ONE_SIM_PER_PROCESS[get("backend")])
        )
    for key in ("net.actor_hidden", "net.critic_hidden"):
        if not get(key) or min(get(key)) <= 0:
            raise ConfigError(
                "%s=%r must be a non-empty list of positive widths, e.g. [256,256]" % (key, list(get(key)))
            )
    for role in ("critic", "actor"):
        width = get("net.%s_width" % role)
        hidden = (
            [width] * (get("net.%s_depth" % role) or 2)
            if width is not None
            else list(get("net.%s_hidden" % role))
        )
        arch = get("net.%s_arch" % role)
        if arch == "bro" and len(hidden) < 2:
            raise ConfigError(
                "net.%s_arch=bro needs >= 1 residual block: net.%s_depth >= 2 (depth = blocks + 1)"
                % (role, role)
            )
        if arch == "bro" and len(set(hidden)) > 1:
            raise ConfigError(
                "net.%s_arch=bro uses one width: set net.%s_width (and net.%s_depth) instead of "
                "net.%s_hidden=%r" % (role, role, role, role, hidden)
            )
    if get("net.critic_arch") == "softmoe":
        width = get("net.critic_width") or get("net.critic_hidden")[0]
        depth = get("net.critic_depth") or (2 if get("net.critic_width") else len(get("net.critic_hidden")))
        if depth < 2:
            raise ConfigError(
                "net.critic_arch=softmoe needs net.critic_depth >= 2 (a dense layer, then the Soft MoE layer)"
            )
        if width % get("net.tokens"):
            raise ConfigError(
                "net.critic_arch=softmoe cuts the width into net.tokens tokens: critic width %d is not "
                "divisible by net.tokens=%d" % (width, get("net.tokens"))
            )
        if get("net.critic_width") is None and len(set(get("net.critic_hidden"))) > 1:
            raise ConfigError(
                "net.critic_arch=softmoe uses one width: set net.critic_width (and net.critic_depth)"
            )
    population_spec.validate(get)
    env_spec.validate(get)


def defaults_for(pairs, cfg=None):
    """The task YAML a run with these overrides reads: chosen by task, backend and device (tasks.defaults_path)."""
    cfg = cfg if cfg is not None else OmegaConf.structured(Config)
    d = dict(pairs)
    return tasks.defaults_path(
        d.get("task", cfg.task), d.get("backend", cfg.backend), d.get("device", cfg.device)
    )


def load(overrides=(), base=None):
    """Build the resolved config: schema < task YAML < `base` (a dict, e.g. a resumed run's config) < overrides."""
    pairs = parse_overrides(list(overrides))
    cfg = OmegaConf.structured(Config)
    if base is not None:
        for key, value in flatten(base, keep=MAPPINGS):
            _set(cfg, key, value, "resumed config")
    path = defaults_for(pairs, cfg)
    if path is not None and base is None:
        with open(path) as f:
            for key, value in flatten(yaml.safe_load(f) or {}, keep=MAPPINGS):
                _set(cfg, key, value, path)
    for key, value in pairs:
        _set(cfg, key, value, "command line")
    validate(cfg)
    normalise_devices(cfg)
    return cfg


DEVICE_KEYS = ("device", "actor_device", "v_learner_device", "p_learner_device")


def normalise_device(value):
    """`cuda` -> `cuda:<current device>`, once, where the config is resolved: torch.cuda.set_device needs an
    index, and `cuda` and `cuda:0` naming one GPU twice would double every event and synchronisation. Left as
    given where torch sees no GPU (resources.check_devices then says what is missing) and for anything else."""
    if value is None or str(value).strip() != "cuda":
        return value
    import torch  # only here: the sweep and study drivers load configs without needing torch otherwise

    if not torch.cuda.is_available():
        return value
    return "cuda:%d" % torch.cuda.current_device()


def normalise_devices(cfg):
    for key in DEVICE_KEYS:
        value = OmegaConf.select(cfg, key)
        new = normalise_device(value)
        if new != value:
            OmegaConf.update(cfg, key, new)


def to_dict(cfg):
    return OmegaConf.to_container(cfg, resolve=True)


def to_yaml(cfg):
    return OmegaConf.to_yaml(cfg)
