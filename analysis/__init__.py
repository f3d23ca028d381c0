"""Scaling analysis: run logs -> learning curves -> crossings -> fits -> plots/report (science.md 1-5).

Never imports pql_scaling, envs or tasks. Modules: load (tables), fit (pure fits), pipeline (the whole
analysis as one function), plots, report (files), cli (`pql-scale analyze|recommend`), gym (R1 constants).
"""
