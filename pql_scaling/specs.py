"""The spec machinery every schema shares: the training config (config.py), sweep, study and analysis specs.

Fields declare their constraints next to them (`choice`, `positive`, `non_negative`, `unit_interval`: dataclass
field metadata that `constraints()` collects); `closest` is the one "did you mean"; `read_spec`, `set_dotted`,
`spec_keys` and `flatten` read a YAML spec, apply `key=value` overrides and list a schema's keys.
"""

import difflib
import os
from dataclasses import field, fields, is_dataclass

import yaml


def _field(default, **meta):
    return field(default=default, metadata=meta)


def choice(default, *options):
    """A field whose value must be one of `options` (checked by validate())."""
    return _field(default, choices=tuple(options))


def positive(default):
    return _field(default, check="positive")  # > 0 (None allowed where the type is Optional)


def non_negative(default):
    return _field(default, check="non_negative")


def unit_interval(default):
    return _field(default, check="unit_interval")  # in (0, 1]


def constraints(cls, prefix=""):
    """{dotted key: field metadata} for every constrained leaf of a schema dataclass."""
    out = {}
    for f in fields(cls):
        default = f.default_factory() if callable(getattr(f, "default_factory", None)) else f.default
        if is_dataclass(default):
            out.update(constraints(type(default), prefix + f.name + "."))
        elif f.metadata:
            out[prefix + f.name] = dict(f.metadata)
    return out


def parse_assignment(arg, error, example, keep_raw=None):
    """One `key=value` argument -> (key, value), the value read as YAML (a number, a list, null; text that is not
    YAML stays text), or kept as typed where `keep_raw(key)` (a string field: YAML reads `off` as False and
    `2024` as an int). The one parser of training overrides, sweep and study overrides."""
    if "=" not in arg:
        raise error("expected key=value, got %r (e.g. %s)" % (arg, example))
    key, raw = arg.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    if value is not None and keep_raw is not None and keep_raw(key):
        value = raw
    return key, value


def did_you_mean(key, valid):
    close = closest(key, valid)
    return ("; did you mean: " + ", ".join(close)) if close else ""


def closest(key, valid):
    """The valid keys a mistyped `key` most likely meant: close spellings, then keys with the same last part
    (`batch_size` -> `algo.batch_size`)."""
    valid = list(valid)
    close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.5)
    leaf = str(key).rsplit(".", 1)[-1]
    close += [k for k in valid if k.rsplit(".", 1)[-1] == leaf and k not in close]
    return close


def spec_keys(cls, prefix=""):
    """Every dotted key of a spec dataclass, nested dataclasses included (for unknown-key suggestions)."""
    out = []
    for f in fields(cls):
        default = f.default_factory() if callable(getattr(f, "default_factory", None)) else f.default
        out.append(prefix + f.name)
        if is_dataclass(default):
            out += spec_keys(type(default), prefix + f.name + ".")
    return out


def read_spec(path_or_dict, what, error, fields_hint):
    """A spec's raw mapping from a YAML path or a dict (copied), each failure an `error` naming the file:
    missing, not YAML, not a mapping. Returns (where, raw)."""
    if isinstance(path_or_dict, (str, os.PathLike)):
        where = str(path_or_dict)
        if not os.path.exists(where):
            raise error("%s spec %s does not exist" % (what, where))
        with open(where) as f:
            try:
                raw = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise error("%s spec %s is not valid YAML: %s" % (what, where, e))
    else:
        from omegaconf import (
            OmegaConf,
        )  # here only: the analysis imports this module without the training stack

        where, raw = "the spec dict", OmegaConf.to_container(OmegaConf.create(dict(path_or_dict)))
    if not isinstance(raw, dict):
        raise error("%s spec %s must be a mapping (%s)" % (what, where, fields_hint))
    return where, dict(raw)


def set_dotted(raw, key, value, arg, error):
    """raw[a][b][c] = value for key "a.b.c" (the override `arg`), creating mappings on the way."""
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise error("override %s: %s is not a mapping" % (arg, p))
    node[parts[-1]] = value


def flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flatten(v, prefix + str(k) + ".")
        else:
            yield prefix + str(k), v
