"""`pql-scale study SPEC`: R1's protocol as one resumable command (docs/science.md 2), graded on runs it never
fitted.

    grid      sweep UTD x batch size x lr (x seeds), short budget -> analyze -> B*(sigma), lr*(sigma) rules
    fitted    sweep UTDs with the rules' (B, lr)  -> analyze -> D_J(sigma), C_J, frontier, sigma*(F)
    predict   prediction.json for held-out configurations: UTDs outside the fitted range and the
              budget-optimal UTD for a budget above every fitted one (written once, before any validation
              run starts, with the code version and time; never recomputed once it exists)
    validate  sweep those configurations -> grade.json (predicted vs measured per threshold), report.md

Every stage is an ordinary sweep (pql_scaling.experiments.sweep) writing ordinary run directories under the
study's `out`, so a rerun continues where it stopped: completed runs are skipped, stopped ones resumed,
analyses recomputed from the run directories. Analysis is called only through its public functions; it never
imports this package.

    spec.py    the study spec's schema, load_spec and its validation, the sweep spec of each stage
    stages.py  run: the stages in order, the prediction, the grade, the report and the W&B mirror
"""

from pql_scaling.experiments.study.spec import (
    AnalysisSpec,
    FittedStage,
    GridStage,
    RecommendSpec,
    ReturnsSpec,
    StudyError,
    StudySpec,
    ValidateStage,
    WandbSpec,
    load_spec,
)
from pql_scaling.experiments.study.stages import code_version, run

__all__ = [
    "AnalysisSpec",
    "FittedStage",
    "GridStage",
    "RecommendSpec",
    "ReturnsSpec",
    "StudyError",
    "StudySpec",
    "ValidateStage",
    "WandbSpec",
    "load_spec",
    "code_version",
    "run",
]
