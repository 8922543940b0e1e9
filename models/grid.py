"""The cross-validation grid: hyper-parameter sets from a string or a JSON file.

String form (the cartesian product of the lists, in the order written)::

    lr=1e-3,5e-4;epochs=30,60;lr_mode=cosine,triangular

JSON form, a file path or the text itself: an object of lists (product, as above) or a list
of objects (the sets, as written)::

    {"lr": [0.001, 0.0005], "epochs": [30]}
    [{"lr": 0.001, "epochs": 30}, {"lr": 0.0005, "epochs": 60, "lr_mode": "step"}]

Keys are option names with ``_`` or ``-`` (``lr_mode`` = ``lr-mode``); unknown keys are
refused with the list of valid ones. In the string form a value that is itself a comma list
(``lr_steps``) writes its commas as ``/``: ``lr_steps=20/25,30/40`` gives two sets.
"""
import argparse
import copy
import itertools
import json
import os


def _norm(key):
    return key.strip().replace("-", "_")


def _convert(key, value, types, where):
    conv = types[key]
    if conv is None:
        return value
    try:
        return conv(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"grid {where}: {key}={value!r} is not a valid "
                         f"{getattr(conv, '__name__', 'value')} ({err})") from None


def _check_key(key, types, where):
    if key not in types:
        raise ValueError(f"grid {where}: unknown key {key!r}; valid keys: "
                         f"{', '.join(sorted(types))}")


def _product(axes):
    keys = [k for k, _ in axes]
    return [dict(zip(keys, combo)) for combo in itertools.product(*[v for _, v in axes])]


def parse_grid_string(text, types):
    """Parse ``key=v1,v2;key2=...`` into a list of sets (cartesian product).

    Parameters
    ----------
    text : str
    types : dict
        Valid key -> converter from a string token (``float``, ``int``, ``str`` ...), or
        None to keep the token.

    Returns
    -------
    list of dict
    """
    axes, seen = [], set()
    for n, part in enumerate(p for p in text.split(";") if p.strip()):
        where = f"part {n + 1} ({part.strip()!r})"
        if "=" not in part:
            raise ValueError(f"grid {where}: want 'key=value[,value...]', no '=' found")
        key, values = part.split("=", 1)
        key = _norm(key)
        _check_key(key, types, where)
        if key in seen:
            raise ValueError(f"grid {where}: key {key!r} given twice")
        seen.add(key)
        tokens = [t.strip() for t in values.split(",")]
        if not tokens or any(t == "" for t in tokens):
            raise ValueError(f"grid {where}: empty value in {values!r}")
        tokens = [t.replace("/", ",") for t in tokens]
        axes.append((key, [_convert(key, t, types, where) for t in tokens]))
    if not axes:
        raise ValueError(f"grid {text!r}: no 'key=values' part found")
    return _product(axes)


def parse_grid_json(obj, types):
    """Sets from a decoded JSON grid: an object of lists (product) or a list of objects."""
    if isinstance(obj, dict):
        axes = []
        for key, values in obj.items():
            nkey = _norm(key)
            _check_key(nkey, types, f"key {key!r}")
            values = values if isinstance(values, list) else [values]
            if not values:
                raise ValueError(f"grid key {key!r}: empty list of values")
            axes.append((nkey, [_convert(nkey, _json_token(v), types, f"key {key!r}")
                                for v in values]))
        if not axes:
            raise ValueError("grid: empty JSON object")
        return _product(axes)
    if isinstance(obj, list):
        if not obj:
            raise ValueError("grid: empty JSON list of sets")
        sets = []
        for n, item in enumerate(obj):
            if not isinstance(item, dict):
                raise ValueError(f"grid set {n}: want a JSON object, got {type(item).__name__}")
            one = {}
            for key, v in item.items():
                nkey = _norm(key)
                _check_key(nkey, types, f"set {n}")
                one[nkey] = _convert(nkey, _json_token(v), types, f"set {n}")
            sets.append(one)
        return sets
    raise ValueError(f"grid JSON must be an object of lists or a list of objects, "
                     f"got {type(obj).__name__}")


def _json_token(v):
    # A JSON list value (e.g. lr_steps [20, 25]) becomes the comma string the option takes.
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return v


def parse_grid(spec, types):
    """Hyper-parameter sets from ``--grid``.

    Parameters
    ----------
    spec : str or None
        String form, JSON text, or a path to a ``.json`` file; None or '' gives one empty
        set (the command-line values).
    types : dict
        Valid key -> converter (see :func:`parse_grid_string`).

    Returns
    -------
    list of dict
        One dict of overrides per set; keys use ``_``.
    """
    if spec is None or not str(spec).strip():
        return [{}]
    spec = str(spec).strip()
    if spec.endswith(".json") or (os.path.sep in spec and os.path.isfile(spec)):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"--grid {spec}: no such file")
        with open(spec, encoding="utf-8") as f:
            try:
                return parse_grid_json(json.load(f), types)
            except json.JSONDecodeError as err:
                raise ValueError(f"--grid {spec}: not valid JSON ({err})") from None
    if spec[0] in "[{":
        try:
            return parse_grid_json(json.loads(spec), types)
        except json.JSONDecodeError as err:
            raise ValueError(f"--grid: text starts like JSON but does not parse ({err})") from None
    return parse_grid_string(spec, types)


def grid_types(parser, keys):
    """Converters for the grid keys from an argparse parser's own option types.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    keys : iterable of str
        Option destinations (``lr_mode``) that a grid may set.

    Returns
    -------
    dict
        key -> converter; choices are checked too.
    """
    actions = {a.dest: a for a in parser._actions}
    types = {}
    for key in keys:
        if key not in actions:
            raise KeyError(f"grid key {key!r} is not an option of the parser")
        types[key] = _action_converter(actions[key])
    return types


def _action_converter(action):
    base = action.type or str
    if (action.const is True and action.nargs == 0) or \
            isinstance(action, argparse.BooleanOptionalAction):  # store_true, --x/--no-x
        base = _bool
    choices = action.choices

    def conv(token):
        if base is int and isinstance(token, float) and not token.is_integer():
            raise ValueError("want an integer")
        value = base(token)
        if choices is not None and value not in choices:
            raise ValueError(f"choose one of {', '.join(map(str, choices))}")
        return value
    conv.__name__ = getattr(base, "__name__", "value")
    return conv


def _bool(token):
    if isinstance(token, bool):
        return token
    t = str(token).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"want true/false, got {token!r}")


def set_label(params):
    """A short stable label for a set: ``lr=0.001 epochs=30`` (``default`` when empty)."""
    if not params:
        return "default"
    return " ".join(f"{k}={v}" for k, v in params.items())


def apply_set(args, overrides):
    """A copy of the options ``args`` with a set's ``overrides`` (key -> value) applied."""
    p = copy.copy(args)
    for k, v in overrides.items():
        setattr(p, k, v)
    return p
