"""The spec machinery every schema shares: the training config (config.py), sweep, study and analysis specs.

Fields declare their constraints next to them (`choice`, `positive`, `non_negative`, `unit_interval`, or
`described` with a schema's own keys: dataclass field metadata that `constraints()` collects and `broken()`
checks); `same_as` reuses another schema's field (its default and constraints, not a copy); `closest` is the one
"did you mean"; `read_spec`, `set_dotted`, `spec_keys` and `flatten` read a YAML spec, apply `key=value`
overrides and list a schema's keys; `defaults` and `is_instance` serve schemas whose values stay a plain dict
(the analysis config).
"""

import copy
import difflib
import os
import typing
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any, Dict, Optional

import yaml


def _field(default, **meta):
    if isinstance(default, (list, dict, set)):  # a mutable default: a fresh copy for every instance
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def described(default: Any, **meta: Any) -> Any:
    """A field with its default and free-form metadata: a schema's own keys (e.g. the analysis's `expect`,
    `number`, `mode`) beside the shared `choices` and `check`."""
    return _field(default, **meta)


def same_as(cls: type, name: str) -> Any:
    """Field `name` of schema `cls` again, in another schema: its default and its metadata (choices, ranges),
    read from `cls` so that both schemas hold one definition (the study's analysis section takes the analysis
    schema's)."""
    f = next(f for f in fields(cls) if f.name == name)
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    return _field(default, **dict(f.metadata))


def defaults(cls: type) -> Dict[str, Any]:
    """{field name: default} of a flat schema, list and dict defaults fresh copies."""
    return {
        f.name: f.default_factory() if f.default_factory is not MISSING else f.default for f in fields(cls)
    }


def broken(value: Any, meta: Dict[str, Any]) -> Optional[str]:
    """The constraint of a field's metadata that `value` breaks ("choices", "positive", "non_negative",
    "unit_interval"), or None. A number constraint takes a number (None passes `positive`: an Optional
    field's "not set")."""
    if "choices" in meta and value not in meta["choices"]:
        return "choices"
    check = meta.get("check")
    if check == "positive" and value is not None and not value > 0:
        return check
    if check == "non_negative" and not value >= 0:
        return check
    if check == "unit_interval" and not 0 < value <= 1:
        return check
    return None


def is_instance(value: Any, annotation: Any) -> bool:
    """isinstance against a field's annotation (typing's Optional / Union / List / Dict included): the
    container's type, and each element where it must be text (a list of paths). Numbers inside a list or a
    mapping are the schema's to coerce (YAML 1.1 reads `1.5e5` as text), so they are not checked here."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if origin is typing.Union:
        return any(is_instance(value, a) for a in args)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and (
            not args or args[0] is not str or all(isinstance(v, str) for v in value)
        )
    if origin is dict:
        return isinstance(value, dict) and (
            len(args) < 2 or args[1] is not str or all(isinstance(v, str) for v in value.values())
        )
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


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


def flatten(d, prefix="", keep=()):
    """Nested mappings -> (dotted key, value); a key in `keep` holds a mapping as its value."""
    for k, v in d.items():
        if isinstance(v, dict) and prefix + str(k) not in keep:
            yield from flatten(v, prefix + str(k) + ".", keep)
        else:
            yield prefix + str(k), v
