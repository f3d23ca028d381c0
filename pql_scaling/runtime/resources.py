"""Checks that run before anything starts: every device key names a device this machine has, and the replay
(the one large allocation) fits in the memory it will live in, with the key and the fix in the message.

A replay row holds obs, next_obs, action and reward / discount / weight in float32. On CPU it lives in host RAM,
and in mode=trio in /dev/shm too (shared with the learner processes; a tmpfs counts against RAM); on a GPU in
that device's free memory. We allow FRACTION of what is available, leaving room for nets, batches and the rest.
"""

import os

import torch

from pql_scaling.config import DEVICE_KEYS, ConfigError

FRACTION = 0.8


def check_devices(cfg):
    for key in DEVICE_KEYS:
        value = getattr(cfg, key)
        if value is None:
            continue
        try:
            d = torch.device(value)
        except (RuntimeError, ValueError, TypeError) as e:
            raise ConfigError(
                "%s=%r is not a device (%s): use cpu, cuda or cuda:N" % (key, value, str(e).splitlines()[0])
            )
        if d.type == "cpu":
            continue
        if d.type != "cuda":
            raise ConfigError(
                "%s=%s: only cpu and cuda devices are supported; set %s=cpu or cuda:N" % (key, value, key)
            )
        if not torch.cuda.is_available():
            raise ConfigError(
                "%s=%s, but this torch (%s) sees no CUDA device (%s): set %s=cpu, or install a CUDA build "
                "of torch on a machine with an NVIDIA GPU and driver"
                % (
                    key,
                    value,
                    torch.__version__,
                    "a CPU-only build" if torch.version.cuda is None else "no GPU or driver visible",
                    key,
                )
            )
        n = torch.cuda.device_count()
        if (d.index or 0) >= n:
            raise ConfigError(
                "%s=%s, but this machine has %d GPU(s) visible (cuda:0%s): pick one of those, or check "
                "CUDA_VISIBLE_DEVICES" % (key, value, n, "" if n == 1 else "..cuda:%d" % (n - 1))
            )


def replay_row_bytes(obs_dim, act_dim, critic_obs_dim=0):
    return 4 * (2 * obs_dim + 2 * critic_obs_dim + act_dim + 3)


def host_available():
    """Bytes of host RAM available (MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def shm_available(path="/dev/shm"):
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def replay_memory(cfg):
    """[(what, bytes available)] for the memory the replay will live in."""
    trio = cfg.mode == "trio"
    device = torch.device((cfg.v_learner_device or cfg.device) if trio else cfg.device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return [("free memory on %s" % device, free)]
    out = [("available host RAM", host_available())]
    if trio:
        out.append(("free space in /dev/shm (mode=trio shares the replay there)", shm_available()))
    return [(w, b) for w, b in out if b is not None]


def check_memory(cfg, obs_dim, act_dim, num_envs, critic_obs_dim=0):
    capacity = max(int(cfg.algo.buffer_size) // num_envs, 1) * num_envs
    row = replay_row_bytes(obs_dim, act_dim, critic_obs_dim)
    need = capacity * row
    for what, avail in replay_memory(cfg):
        if need > FRACTION * avail:
            fits = int(FRACTION * avail // row) // num_envs * num_envs
            raise ConfigError(
                "algo.buffer_size=%d needs %.2f GB for the replay (%d bytes per row: obs_dim %d, act_dim %d, "
                "critic_obs_dim %d), but the "
                "%s is %.2f GB; at most algo.buffer_size=%d fits (%d%% of it): set algo.buffer_size=%d or less"
                % (
                    cfg.algo.buffer_size,
                    need / 1e9,
                    row,
                    obs_dim,
                    act_dim,
                    critic_obs_dim,
                    what,
                    avail / 1e9,
                    fits,
                    int(FRACTION * 100),
                    fits,
                )
            )
    return need
