"""`format: table`: tidy CSV or Parquet files (one row per run and step, or per run, step and metric) -> the
tidy table (table.py), with the columns named by the config's `table:` mapping (config.TableSpec).

Every check names the file and the first offending row: a missing column, a non-numeric value, a run with
two values of one parameter, a run logging one step twice. Vectorised over rows (10^7 rows load in seconds):
runs are integer codes, and nothing loops over rows in Python.
"""

import glob
import os

import numpy as np
import pandas as pd

from ..config import TABLE_PARAMS, TEXT_PARAMS
from ..errors import AnalysisInputError
from .table import COLUMNS, CONFIG_KEYS, frame
from .wide import SOURCE

SERIES = ("grad_steps", "flops", "wall_time_s")  # optional per-row columns besides the return
# the floats exactly as written: pandas < 3's default parser can differ in the last bit (3 parses exactly and
# deprecates the option)
_EXACT = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
RUN_DEFAULTS = {"algo": "unknown", "experts": 0, "num_envs": 1}  # what a table that does not say gets


def table_files(inputs):
    """The CSV / Parquet files the inputs name (files, folders or globs), sorted; an input matching none is
    an error."""
    out = []
    for src in inputs:
        if os.path.isdir(src):
            found = [os.path.join(src, f) for f in os.listdir(src)]
        else:
            found = glob.glob(src) if glob.has_magic(src) else ([src] if os.path.exists(src) else [])
        found = sorted(f for f in found if f.endswith((".csv", ".csv.gz", ".parquet", ".pq")))
        if not found:
            raise AnalysisInputError(
                f"input {src!r}: no .csv or .parquet file there (format: table reads tidy CSV / Parquet "
                "files, a folder of them or a glob such as results/*.csv)"
            )
        out += found
    return out


def _source(p):
    """(column, map, constant) of one `params` entry: `col`, {column: col, map: {...}} or {value: v}."""
    return (p, None, None) if isinstance(p, str) else (p.get("column"), p.get("map"), p.get("value"))


def needed_columns(spec):
    task = spec["task"] if isinstance(spec["task"], str) else None  # else {value: the task}
    cols = list(spec["run"]) + [task, spec["seed"], spec["step"], spec["value"]]
    cols += list(spec["where"]) + [_source(p)[0] for p in spec["params"].values()]
    cols += [spec[k] for k in SERIES]
    return list(dict.fromkeys(c for c in cols if c is not None))


class _File:
    """One file's rows and how to name a row of it in an error (CSV: its line; Parquet: its row; a wide W&B
    export (wide.py): its line and column)."""

    def __init__(self, path, cols, spec=None):
        self.path = path
        self.parquet = path.endswith((".parquet", ".pq"))
        self.unit, self.base = ("row", 0) if self.parquet else ("line", 2)  # CSV line 1 is the header
        self.step = None
        try:
            if spec is not None and spec.get("wide"):
                from .wide import melt

                self.df, self.step = melt(self, spec, cols)
            else:
                self._check(cols, self.header())
                self.df = self.read(cols)
        except ImportError as e:
            raise AnalysisInputError(f"{path}: Parquet needs pyarrow ({e}): pip install pyarrow") from None
        except AnalysisInputError:
            raise
        except (OSError, ValueError, pd.errors.ParserError) as e:
            raise AnalysisInputError(f"{path}: not a readable table ({type(e).__name__}: {e})") from None

    def header(self, raw=False):
        """The column names; `raw`: as written, a repeated name repeated (pandas renames the second `x.1`)."""
        if self.parquet:
            import pyarrow.parquet as pq

            return pq.read_schema(self.path).names
        if raw:
            return [str(c) for c in pd.read_csv(self.path, header=None, nrows=1, dtype=str).iloc[0]]
        return pd.read_csv(self.path, nrows=0).columns.tolist()

    def read(self, cols):
        if self.parquet:
            import pyarrow.parquet as pq

            # column by column, freeing Arrow's buffers as it goes: half the peak of read_parquet
            return pq.read_table(self.path, columns=cols).to_pandas(split_blocks=True, self_destruct=True)
        return pd.read_csv(self.path, usecols=cols, **_EXACT)

    def _check(self, cols, have):
        missing = [c for c in cols if c not in have]
        if missing:
            raise AnalysisInputError(
                f"{self.path}: column(s) {missing} named in the `table:` config are not in the file; "
                f"its columns are {list(have)}"
            )

    def where(self, i):
        """Row position i (after filtering) as the file names it."""
        col = f" (column {self.df[SOURCE].iloc[i]!r})" if self.step is not None else ""
        return f"{self.path} {self.unit} {self.df.index[i] + self.base}{col}"

    def numeric(self, values, what):
        """`values` (a Series aligned with the rows) as floats; an empty cell is a missing value, anything
        else that is not a number is an error naming its row."""
        v = pd.to_numeric(values, errors="coerce").to_numpy(float)
        bad = np.isnan(v) & values.notna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise AnalysisInputError(f"{self.where(i)}: {what} holds {values.iloc[i]!r}, not a number")
        return v


class _Runs:
    """The runs of one file: an integer code per row (in order of first appearance), each run's first row,
    and its name (the `run` columns' values joined by '/')."""

    def __init__(self, f, cols):
        key = np.zeros(len(f.df), np.int64)
        for c in cols:  # one column at a time: a MultiIndex of 10^7 tuples costs seconds
            k, u = pd.factorize(f.df[c])
            key = key * (len(u) + 1) + (k + 1)
        self.codes, _ = pd.factorize(key)
        seen = np.maximum.accumulate(self.codes)
        self.first = np.flatnonzero(np.r_[True, self.codes[1:] > seen[:-1]])  # run k's first row
        heads = f.df.iloc[self.first]
        self.names = np.array(["/".join(map(str, r)) for r in zip(*(heads[c] for c in cols))], dtype=object)

    def __len__(self):
        return len(self.names)


def _per_run(f, runs, values, what):
    """(index into `uniq` of each run's value, uniq) of a column that holds one value per run; a run holding
    two is an error naming the first row that differs. Factorized: checks compare integers, not values."""
    vc, uniq = pd.factorize(values)  # a missing value gets -1
    head = vc[runs.first][runs.codes]
    bad = vc != head
    if bad.any():
        i = int(np.argmax(bad))
        show = lambda c: (uniq[c].item() if hasattr(uniq[c], "item") else uniq[c]) if c >= 0 else None
        raise AnalysisInputError(
            f"{f.where(i)}: run {runs.names[runs.codes[i]]!r} has two values of {what} ({show(head[i])!r} "
            f"and {show(vc[i])!r}): add the column that separates them to `table.run`, or fix the data"
        )
    return vc[runs.first], np.asarray(uniq, dtype=object)


def _pick(uniq, ix, missing):
    """Each run's value from its index into `uniq` (-1: missing)."""
    return np.append(np.asarray(uniq, dtype=object), [missing])[ix]


def _numbers(f, column, uniq, what):
    """The factorized values `uniq` as floats; one that is not a number is an error naming its first row."""
    v = pd.to_numeric(pd.Series(uniq, dtype=object), errors="coerce").to_numpy(float)
    bad = np.isnan(v) & pd.notna(pd.Series(uniq, dtype=object)).to_numpy()
    if bad.any():
        i = int(np.argmax(column.astype(str).eq(str(uniq[np.argmax(bad)])).to_numpy()))
        raise AnalysisInputError(f"{f.where(i)}: {what} holds {uniq[np.argmax(bad)]!r}, not a number")
    return np.r_[v, np.nan]  # index -1 (a missing value) reads the NaN


def _param(f, name, p, runs):
    """One run-level parameter per run: a column, a column through a map, or a constant."""
    col, mapping, const = _source(p)
    text = name in TEXT_PARAMS
    if col is None:
        return np.full(len(runs), const, dtype=object if text else float)
    what = f"table.params.{name} (column {col!r})"
    ix, uniq = _per_run(f, runs, f.df[col], what)
    if mapping is not None:
        keys = {str(k): v for k, v in mapping.items()}
        missing = [u for u in uniq if str(u) not in keys]
        if missing:
            i = int(np.argmax(f.df[col].astype(str).eq(str(missing[0])).to_numpy()))
            raise AnalysisInputError(
                f"{f.where(i)}: {col}={missing[0]} is not a key of table.params.{name}.map "
                f"(keys: {sorted(keys)})"
            )
        uniq = np.array([keys[str(u)] for u in uniq], dtype=object)
    if text:
        return _pick(uniq.astype(str), ix, None)
    return _numbers(f, f.df[col], uniq, what)[ix]


def _steps(f, spec, runs):
    if spec["step"] is not None:
        st = f.numeric(f.df[spec["step"]], f"table.step (column {spec['step']!r})")
        if np.isnan(st).any():
            raise AnalysisInputError(f"{f.where(int(np.argmax(np.isnan(st))))}: the step is empty")
        return st
    # one row per `steps_per_row` env steps, in file order within each run: row k of a run is step (k+1) * n
    k = pd.Series(runs.codes).groupby(runs.codes).cumcount().to_numpy()
    return (k + 1.0) * float(spec["steps_per_row"])


def _check_duplicates(f, runs, steps):
    """A run logging one step twice is an error naming the later row. Rows of a run written together in
    increasing steps (the usual file) are checked without sorting."""
    c = runs.codes
    same = c[1:] == c[:-1]
    if (len(c) - 1 - same.sum()) == len(runs) - 1 and (steps[1:][same] > steps[:-1][same]).all():
        return
    order = np.lexsort((np.arange(len(c)), steps, c))
    dup = np.r_[False, (c[order][1:] == c[order][:-1]) & (steps[order][1:] == steps[order][:-1])]
    if dup.any():
        pos = np.flatnonzero(dup)[np.argmin(order[dup])]
        i, j = int(order[pos]), int(order[pos - 1])  # the first repeating row (file order), its earlier twin
        raise AnalysisInputError(
            f"{f.where(i)}: run {runs.names[c[i]]!r} logs step {steps[i]:g} twice (first at "
            f"{f.unit} {f.df.index[j] + f.base}): keep one metric with `table.where` (e.g. "
            "{metric: return}) or add the column that separates the runs to `table.run`"
        )


def _run_table(f, spec, runs):
    """One row per run: its task, seed and parameters in the tidy table's columns."""
    n = len(runs)
    out = pd.DataFrame({"run": runs.names, **{k: np.full(n, v) for k, v in RUN_DEFAULTS.items()}})
    for col in ("sigma", "batch_size", "lr", "model_size", "r_max"):
        out[col] = np.nan
    if isinstance(spec["task"], dict):
        out["task"] = str(spec["task"]["value"])
    else:
        ix, uniq = _per_run(f, runs, f.df[spec["task"]], "task")
        out["task"] = _pick(uniq.astype(str), ix, "nan")
    for name, p in spec["params"].items():
        out[TABLE_PARAMS[name]] = _param(f, name, p, runs)
    out["seed"] = None
    if spec["seed"] is not None:
        ix, uniq = _per_run(f, runs, f.df[spec["seed"]], f"seed (column {spec['seed']!r})")
        out["seed"] = _pick(uniq, ix, None)
    return number_seeds(out, f.path)


def number_seeds(runs, where):
    """Seeds as integers: numbers as they are, other labels numbered in sorted order, none given: the runs of
    one configuration numbered 0, 1, ... Two runs of one configuration with one seed are an error."""
    key = runs.fillna({"batch_size": -1.0, "lr": -1.0, "model_size": -1.0})  # groupby drops NaN keys
    seed = runs["seed"]
    if seed.isna().all():
        runs["seed"] = key.groupby(CONFIG_KEYS, dropna=False).cumcount().to_numpy()
    else:
        if seed.isna().any():
            raise AnalysisInputError(f"{where}: run {runs.run[seed.isna()].iloc[0]!r} has no seed; others do")
        num = pd.to_numeric(seed, errors="coerce")
        runs["seed"] = num.to_numpy() if num.notna().all() else pd.factorize(seed.astype(str), sort=True)[0]
    runs["seed"] = runs["seed"].astype(int)
    key["seed"] = runs["seed"]
    clash = key.duplicated(CONFIG_KEYS + ["seed"], keep=False).to_numpy()
    if clash.any():
        two = runs.run[clash].tolist()[:2]
        raise AnalysisInputError(
            f"{where}: runs {two} have the same task, parameters and seed: add the parameter that "
            "separates them (table.params / the hparams / tensorboard.pattern), or name the seed"
        )
    return runs


def load_file(path, spec):
    """One file -> (the tidy table's columns in file order, one row per run: its configuration and seed)."""
    f = _File(path, needed_columns(spec), spec)
    if f.step is not None:  # a wide export, melted: its step column found
        spec = {**spec, "step": f.step}
    for col, vals in spec["where"].items():
        vals = vals if isinstance(vals, (list, tuple)) else [vals]
        s = f.df[col]
        keep = s.isin(vals) | s.astype(str).isin([str(v) for v in vals])
        f.df = f.df[keep.to_numpy()]
    if f.df.empty:
        raise AnalysisInputError(f"{path}: no row left after `table.where` {spec['where']}")
    runs = _Runs(f, spec["run"])
    steps = _steps(f, spec, runs)
    _check_duplicates(f, runs, steps)
    per_run = _run_table(f, spec, runs)
    keys = per_run[CONFIG_KEYS + ["seed", "run"]].assign(file=path)
    # text as categoricals: 1-2 bytes a row, not an 8-byte pointer (10^7 rows); sorted categories, so that
    # groupby orders them as it orders strings
    cats = {c: pd.Categorical(per_run.pop(c).astype(str)) for c in ("task", "algo", "run")}
    out = per_run.take(runs.codes).reset_index(drop=True)
    for c, cat in cats.items():
        out[c] = pd.Categorical.from_codes(cat.codes[runs.codes], cat.categories)
    out["env_steps"] = steps
    out["return"] = f.numeric(f.df[spec["value"]], f"table.value (column {spec['value']!r})")
    for k in SERIES:
        out[k] = f.numeric(f.df[spec[k]], f"table.{k} (column {spec[k]!r})") if spec[k] else np.nan
    if not spec["grad_steps"]:  # as the qscaled layout: critic updates = sigma * env steps
        out["grad_steps"] = out["env_steps"] * out["sigma"]
    return out, keys


def load_table(inputs, spec):
    """Every file of the inputs through the `table:` mapping `spec` (checked by config.check_table).
    Returns (tidy table, skipped)."""
    parts, keys = zip(*[load_file(p, spec) for p in table_files(inputs)])
    if len(parts) == 1:
        return frame(parts[0][COLUMNS]), []
    # each file's runs are distinct (load_file); across files, one configuration and seed twice would be pooled
    # as one run's curve
    k = pd.concat(keys, ignore_index=True)
    dup = k.fillna({"batch_size": -1.0, "lr": -1.0, "model_size": -1.0}).duplicated(
        CONFIG_KEYS + ["seed"], keep=False
    )
    if dup.any():
        two = k[dup.to_numpy()].sort_values(CONFIG_KEYS + ["seed"], kind="stable").head(2)  # one clash
        raise AnalysisInputError(
            f"runs {two.run.tolist()} in {two.file.tolist()} have the same task, parameters and seed: add the "
            "column that separates them to `table.params`, or analyse the files one at a time"
        )
    return frame(pd.concat(parts, ignore_index=True)[COLUMNS]), []
