"""What `pipeline.run_analysis` returns: the fits (fits.json, JSON-able) and the state the figures, the
predictions and the terminal summary are drawn from (arrays and fitted functions, never written)."""

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

import numpy as np


@dataclass
class AnalysisState:
    """The analysis's working arrays and fitted functions. R1 mode fills every field; R5 mode only
    `curves` and `surface_df`."""

    curves: List[dict] = field(default_factory=list)  # every configuration's curve record (load.curves)
    chosen: List[dict] = field(default_factory=list)  # the one per (task, sigma) the D_J(sigma) fits use
    tasks: List[str] = field(default_factory=list)  # sorted tasks of `chosen`
    utds: Optional[np.ndarray] = None  # sorted UTDs of `chosen` [n_utd]
    times: Optional[np.ndarray] = None  # D_J: env steps to each threshold [n_task, n_utd, K]
    btimes: Optional[np.ndarray] = None  # the same per seed-bootstrap resample [n_boot, n_task, n_utd, K]
    cflops: Optional[np.ndarray] = None  # FLOPs the runs measured up to each crossing [n_task, n_utd, K]
    fit_j: List[int] = field(default_factory=list)  # threshold indices some run reached: one D_J fit each
    point_fits: List[dict] = field(default_factory=list)  # the pooled D_J(sigma) fit per fit_j
    boot_fits: List[List[dict]] = field(default_factory=list)  # [resample][fit_j] the same on each resample
    de_fit: List[dict] = field(default_factory=list)  # fits.json's data_efficiency rows, fitted thresholds
    batch_fn: Optional[Callable[[Any], Any]] = None  # sigma -> the batch size the compute counts
    compute_fn: Optional[Callable[[Any, Any], Any]] = None  # (sigma, D) -> compute C; None: compute skipped
    budget_optimum_fn: Optional[Callable[[dict], dict]] = None  # a D_J fit -> its budget optimum (sigma, F)
    surface_df: Any = None  # R5 mode: the cells (pandas DataFrame) the surfaces are fitted on
    ceiling: Optional[tuple] = None  # predict.ceiling's (J_inf, resamples), once per result


@dataclass
class AnalysisResult:
    fits: dict  # everything fits.json holds (numpy values are made JSON by report.to_json)
    state: AnalysisState
