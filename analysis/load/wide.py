"""`table.wide: true`: a W&B export of a chart or a runs table as CSV -> the tidy rows `format: table` reads.

W&B writes such a file "wide": one row per step, one column per run and metric named `<run name> - <metric>`
(a grouped or smoothed line adds `<run name> - <metric>__MIN` / `__MAX`, which are not read), and the x-axis in
a step column (`Step`, `_step`, `global_step`, or the one `table.step` names). `melt` turns it into one row per
(run, step) that logged the metric: the run's name in column `run`, the fields `table.pattern` reads from the
name (`{task}_utd{utd}_s{seed}`) as columns, the step, and each metric the `table:` mapping names (`value`, and
`grad_steps` / `flops` / `wall_time_s` where given) in a column named after it. tabular.py then checks and maps
those rows as any tidy file's, naming the file, line and column of what it finds wrong.
"""

import collections
import re

import numpy as np
import pandas as pd

from ..errors import AnalysisInputError

STEP_COLUMNS = ("Step", "_step", "global_step", "step")  # tried in this order when `table.step` is not given
SEP = " - "
BAND = ("__MIN", "__MAX")
SOURCE = "<column>"  # each melted row's column in the file, for errors


def pattern_fields(pattern):
    return re.findall(r"\{(\w+)\}", pattern or "")


def pattern_regex(pattern):
    """`{task}_utd{utd}_s{seed}` -> a regex for re.fullmatch over a run name, one group per field."""
    parts = re.split(r"\{(\w+)\}", pattern)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts)))


def _metrics(spec):
    """The metrics the mapping reads: the return, then the optional series that are named."""
    from .tabular import SERIES

    return list(dict.fromkeys([spec["value"]] + [spec[k] for k in SERIES if spec[k]]))


def _run_columns(f, header, metric):
    """{run name: its column} of one metric, in the file's order."""
    suffix = SEP + metric
    return {c[: -len(suffix)]: c for c in header if c.endswith(suffix) and len(c) > len(suffix)}


def _step_column(f, spec, header):
    step = spec["step"] or next((c for c in STEP_COLUMNS if c in header), None)
    if step is None or step not in header:
        named = f"{step!r} (table.step)" if step else f"({', '.join(STEP_COLUMNS)})"
        raise AnalysisInputError(
            f"{f.path}: no step column {named} in this wide export: name W&B's x-axis column with `table.step`; "
            f"its columns are {header[:12]}{' ...' if len(header) > 12 else ''}"
        )
    return step


def _fields(f, spec, names, columns):
    """Each run's fields read from its name by `table.pattern`; a name it does not match is an error."""
    if not spec["pattern"]:
        return {}
    rx = pattern_regex(spec["pattern"])
    found = []
    for name, col in zip(names, columns):
        m = rx.fullmatch(name)
        if m is None:
            raise AnalysisInputError(
                f"{f.path}: column {col!r}: run name {name!r} does not match table.pattern "
                f"{spec['pattern']!r}: fix the pattern, or leave the run out of the export"
            )
        found.append(m.groupdict())
    return {k: np.array([d[k] for d in found], dtype=object) for k in pattern_fields(spec["pattern"])}


def melt(f, spec, cols):
    """(the wide file `f` (tabular._File) as tidy rows indexed by their row in the file, its step column);
    `cols` are the columns the rest of the `table:` mapping names, each checked to exist."""
    header = f.header(raw=True)
    step = _step_column(f, spec, header)
    metrics = _metrics(spec)
    by_metric = {m: _run_columns(f, header, m) for m in metrics}
    runs = by_metric[spec["value"]]
    if not runs:
        found = sorted({c.split(SEP, 1)[1] for c in header if SEP in c and not c.endswith(BAND)})
        raise AnalysisInputError(
            f"{f.path}: no column `<run name>{SEP}{spec['value']}` (table.value names the metric of a wide "
            f"export); metrics found: {found[:20]}"
        )
    used = [step] + [c for m in metrics for c in by_metric[m].values()]
    twice = sorted(c for c, n in collections.Counter(header).items() if n > 1 and c in used)
    if twice:
        raise AnalysisInputError(
            f"{f.path}: column {twice[0]!r} appears twice: two runs share a name; rename one in W&B"
        )
    names = list(runs)
    sources = np.array([runs[n] for n in names], dtype=object)
    fields = _fields(f, spec, names, sources)
    clash = sorted(set(fields) & ({"run", step, SOURCE} | set(metrics)))
    if clash:
        raise AnalysisInputError(
            f"table.pattern field {clash[0]!r} is also a column of the wide export: rename it"
        )
    df = f.read(list(dict.fromkeys(used)))
    # an empty cell: the run logged nothing at that step. Rows run by run, each in file order
    run_ix, row_ix = np.nonzero(df[sources.tolist()].notna().to_numpy().T)
    out = pd.DataFrame({"run": np.array(names, dtype=object)[run_ix]}, index=df.index[row_ix])
    out[step] = df[step].to_numpy()[row_ix]
    for m in metrics:
        cols_m = [by_metric[m].get(n, "") for n in names]  # a run without this metric: empty
        out[m] = df.reindex(columns=cols_m).to_numpy()[row_ix, run_ix]
    for k, v in fields.items():
        out[k] = v[run_ix]
    out[SOURCE] = sources[run_ix]
    missing = [c for c in cols if c not in out.columns]
    if missing:
        raise AnalysisInputError(
            f"{f.path}: column(s) {missing} named in the `table:` config: a wide export's rows hold `run` (the "
            f"run name), the step {step!r}, the metrics {metrics} and table.pattern's fields {list(fields)}"
        )
    return out, step
