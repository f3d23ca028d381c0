"""Generate the synthetic R5 fixtures (known parameters) in the layouts of R5's releases:

  model_scaling/w{width}/utd_{sigma}/{task}/avg_return/bs_{B}.npy   (T, 1 + runs), column 0 = env step
  ablations_rr/rr{sigma}_{size}/{task}.npy                           (40 evaluations, 10 seeds)

Each run's return is R_max * (1 - exp(-t / tau)) + noise with tau(sigma, N) = TAU0 * (1 + (A/sigma)^ALPHA +
(B/N)^BETA) (times a per-task / per-batch-size factor), so the time to any threshold follows R5's surface
with exponents ALPHA and BETA. The BRO arrays also carry resets: every RESET gradient steps the return drops
and recovers, which R5's reset filter must remove. Run from the repo root: python tests/data/r5_synth/make.py
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TAU0, A, ALPHA, B, BETA = 1.0e5, 2.0, 0.6, 2.0e6, 0.8
WIDTHS = {128: 604362, 256: 2322634, 512: 9101514}
SIGMAS = [1, 2, 4, 8]
BATCH = {256: 1.15, 1024: 1.0}
TASKS = {"t-a": (1000.0, 1.0), "t-b": (800.0, 1.3)}  # R_max, tau factor
BRO_SIZES = {"xs": 0.55e6, "s": 1.05e6, "m": 4.92e6}
BRO_TASKS = {"d-a": (900.0, 1.0), "d-b": (700.0, 0.8), "d-c": (1000.0, 1.5)}
RESET = 2.5e5  # gradient steps between resets in the fixture (BRO: 2.5e6)


def tau(sigma, n):
    return TAU0 * (1 + (A / sigma) ** ALPHA + (B / n) ** BETA)


def main():
    rng = np.random.default_rng(0)
    for w, n in WIDTHS.items():
        for s in SIGMAS:
            for task, (rmax, f) in TASKS.items():
                for bs, g in BATCH.items():
                    runs = 4 + (w == 256)  # unequal run counts across cells, as in the release
                    steps = np.arange(0, 1.0e6 + 1, 5000.0)
                    t = tau(s, n) * f * g * np.exp(rng.normal(0, 0.02, runs))
                    ret = rmax * (1 - np.exp(-steps[:, None] / t[None])) + rng.normal(
                        0, 0.01 * rmax, (len(steps), runs)
                    )
                    d = os.path.join(HERE, "model_scaling", f"w{w}", f"utd_{s}", task, "avg_return")
                    os.makedirs(d, exist_ok=True)
                    np.save(
                        os.path.join(d, f"bs_{bs}.npy"), np.column_stack([steps, ret]).astype(np.float32)
                    )  # small files
    for size, n in BRO_SIZES.items():
        for s in SIGMAS:
            for task, (rmax, f) in BRO_TASKS.items():
                steps = (np.arange(40) + 1) * 25000.0
                t = tau(s, n) * f * np.exp(rng.normal(0, 0.05, 10))
                ret = rmax * (1 - np.exp(-steps[:, None] / t[None])) + rng.normal(0, 0.02 * rmax, (40, 10))
                every = RESET / s  # env steps between resets
                since = np.mod(steps, every)
                dip = np.where(
                    (steps > every) & (since < 2 * 25000), 0.5, 1.0
                )  # two evaluations knocked down
                ret = ret * dip[:, None]
                d = os.path.join(HERE, "ablations_rr", f"rr{s}_{size}")
                os.makedirs(d, exist_ok=True)
                np.save(os.path.join(d, f"{task}.npy"), ret)


if __name__ == "__main__":
    main()
