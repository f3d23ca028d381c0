"""Scaling analysis: run logs -> learning curves -> crossings -> fits -> plots/report (docs/science.md 1-5).

Never imports pql_scaling, envs or tasks. Modules:
- load (package): run directories, W&B, qscaled arrays, R5's released data -> tables and curve records;
- fit (package): pure fits, one module per paper (R1, R5, R2) plus the shared curve and power-law helpers;
- rules: the hyperparameter rules evaluated (numpy only; pql_scaling.experiments.sweep applies them through it);
- config: the analysis's keys, defaults and checks; hparams: the rules fitted from a sweep;
- pipeline: the analysis as named stages -> result.AnalysisResult (fits.json + typed state); r5mode: R5's
  mode; modelsize: surface, R2 and width fits in R1 mode; wallclock: wall-clock budgets;
- predict (held-out predictions and their grade), recommend (the compute-optimal configuration),
  plots, report (files, the terminal summary, the study's report), cli (`pql-scale analyze|recommend`),
  gym (R1's constants).
"""
