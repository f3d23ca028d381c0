"""Pure fitting functions (numpy arrays in, numbers out): docs/science.md sections 1-4, one module per paper.

R1 = Rybkin et al. 2025 (arXiv 2502.04327), reference analysis github prestonfu/qscaled (MIT);
R2 = Hilton et al. 2023; R5 = Fu, Rybkin et al. 2025. Nothing here reads files or draws.

- intervals: percentile intervals of bootstrap values;
- curves: thresholds, isotonic learning curves and their crossings (every paper);
- powerlaw: R1's c + (x / b)^(-a) and its fits, one at a time and batched over bootstrap resamples;
- joint: D_J(sigma) at every threshold in one fit (alpha shared, monotone in J, log space);
- r1: hyperparameter rules, pooled D_J(sigma), compute, Pareto frontier, budget fit;
- r5: time to threshold per (task, sigma, N), the pooled variant, the (sigma, N) surface;
- r2: intrinsic performance.
The rules' evaluation (`rule_value`) lives in analysis/rules.py (numpy only, shared with the sweep launcher).
"""

from ..errors import AnalysisInputError
from ..rules import rule_value
from .curves import (
    crossing_at,
    crossing_index,
    crossing_resolution,
    crossing_steps,
    crossings,
    isotonic,
    log_thresholds,
    normalise,
)
from .intervals import percentile_interval
from .joint import data_efficiency_joint, data_efficiency_joint_boot, fit_joint
from .powerlaw import fit_power_law, fit_power_law_batch, power_law, solve_each
from .r1 import (
    best_hparams,
    budget_fit,
    budget_optimum,
    compute_r1,
    d_of_sigma,
    data_efficiency,
    data_efficiency_boot,
    pareto_mask,
    pooled_times,
    shared_slope,
    to_physical,
)
from .r2 import fit_intrinsic, intrinsic_performance
from .r5 import (
    drop_after_resets,
    fit_surface,
    log_affine,
    r5_cells,
    r5_pooled,
    surface_optimum,
    surface_value,
)

__all__ = [
    "AnalysisInputError",
    "rule_value",
    "percentile_interval",
    "data_efficiency_joint",
    "data_efficiency_joint_boot",
    "fit_joint",
    "crossing_at",
    "crossing_index",
    "crossing_resolution",
    "crossing_steps",
    "crossings",
    "isotonic",
    "log_thresholds",
    "normalise",
    "fit_power_law",
    "fit_power_law_batch",
    "power_law",
    "solve_each",
    "best_hparams",
    "budget_fit",
    "budget_optimum",
    "compute_r1",
    "d_of_sigma",
    "data_efficiency",
    "data_efficiency_boot",
    "pareto_mask",
    "pooled_times",
    "shared_slope",
    "to_physical",
    "fit_intrinsic",
    "intrinsic_performance",
    "drop_after_resets",
    "fit_surface",
    "log_affine",
    "r5_cells",
    "r5_pooled",
    "surface_optimum",
    "surface_value",
]
