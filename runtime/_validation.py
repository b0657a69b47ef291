"""The rules every value a user hands beamish must meet: names, timeouts, limits, and data
that must come back from msgpack as it went in.

Pure functions, used at both ends: the client checks to fail early and clearly, and the
node checks again because it never trusts a client (any local process may talk to it).
"""

from __future__ import annotations

import functools
import math
from typing import TypeGuard

import msgpack

from beamish.mailbox import EncodeError, pack

from ._values import LimitsMap
from .errors import ConfigError

# LMDB keys are at most 511 bytes and a name is a key as it is; 200 leaves room and keeps
# `beamish ps` readable.
NAME_MAX_BYTES = 200
NAME_RULE = (f"a name is 1 to {NAME_MAX_BYTES} bytes of UTF-8 of printable characters, with "
             "no whitespace, no '/' and no leading '-'")
# An upper bound keeps every limit inside what the kernel's rlimits and the node's
# arithmetic take (1e9 MiB, 1e9 s: far past any real need).
LIMIT_MAX = 1e9
LIMIT_FIELDS = ("memory_mb", "handler_timeout", "cpu_seconds")
_LIMIT_UNITS = {"memory_mb": "MiB", "handler_timeout": "seconds", "cpu_seconds": "CPU seconds"}


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid agent or supervisor name, or None if it is."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    return _str_name_problem(name)


@functools.lru_cache(maxsize=4096)  # checked on every call and cast: mostly the same names
def _str_name_problem(name: str) -> str | None:
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid UTF-8 (a lone surrogate)"
    if size == 0:
        return "it is empty"
    if size > NAME_MAX_BYTES:
        return f"it is {size} bytes of UTF-8"
    for ch in name:
        if ch.isspace():
            return f"it contains whitespace ({ch!r})"
        if not ch.isprintable():
            return f"it contains a control or unprintable character ({ch!r})"
        if ch == "/":
            return "it contains '/'"
    if name.startswith("-"):
        return "it starts with '-' (the CLI would read it as an option)"
    return None


def check_name(name: object, field: str = "name") -> str:
    """Return ``name`` if it follows `NAME_RULE`.

    Raises:
        ConfigError: it does not (naming the field, the value and the rule).
    """
    problem = name_problem(name)
    if problem is None and isinstance(name, str):
        return name
    raise ConfigError(f"{field}={_show(name)} is not a valid name: {problem}; {NAME_RULE}")


def check_lookup_name(name: object, field: str = "name") -> str:
    """Return ``name`` if it can name a stored agent (a string that is a valid LMDB key).

    Looser than `check_name`, so that an agent stored under a name an older beamish let
    through can still be inspected, stopped and deleted.

    Raises:
        ConfigError: it cannot.
    """
    problem = None
    if not isinstance(name, str):
        problem = f"it is a {type(name).__name__}, not a string"
    else:
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            problem = "it is not valid UTF-8 (a lone surrogate)"
        else:
            if not 0 < size <= 511:
                problem = "it is empty" if size == 0 else f"it is {size} bytes of UTF-8"
    if problem is None and isinstance(name, str):
        return name
    raise ConfigError(f"{field}={_show(name)} is not a valid name: {problem}; {NAME_RULE}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_timeout(value: object, field: str = "timeout", *, allow_inf: bool = False,
                  allow_zero: bool = False) -> float:
    """Return ``value`` as seconds if it is a number > 0 (>= 0 with ``allow_zero``;
    finite unless ``allow_inf``).

    Raises:
        ConfigError: a non-number, NaN, zero, a negative number, or an infinity where
            waiting forever is not allowed.
    """
    expected = (f"a {'' if allow_inf else 'finite '}number of seconds "
                f"{'>= 0' if allow_zero else '> 0'}"
                f"{' (math.inf waits forever)' if allow_inf else ''}")
    if not _is_number(value) or math.isnan(value) or value < 0 \
            or (value == 0 and not allow_zero) or (math.isinf(value) and not allow_inf):
        raise ConfigError(f"{field}={_show(value)}: expected {expected}")
    return float(value)


def check_limit(field: str, value: object) -> float | None:
    """Return one `Limits` field's value if it is None or a finite number in (0, 1e9].

    Raises:
        ConfigError: it is not (naming the field, the value and what is expected).
    """
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value) or not 0 < value <= LIMIT_MAX:
        raise ConfigError(f"limits {field}={_show(value)}: expected None or a finite number of "
                          f"{_LIMIT_UNITS[field]} > 0 and at most {LIMIT_MAX:g}")
    return float(value)


def check_limits(data: object) -> LimitsMap:
    """Return a spawn's limits (a dict of `Limits` fields, or None) as a checked dict
    without the unset fields.

    Raises:
        ConfigError: not a dict, an unknown field, or a bad value.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"limits={_show(data)}: expected a Limits or a dict of "
                          f"{', '.join(LIMIT_FIELDS)}")
    unknown = [k for k in data if k not in LIMIT_FIELDS]
    if unknown:
        raise ConfigError(f"limits: unknown field {_show(unknown[0])}; expected "
                          f"{', '.join(LIMIT_FIELDS)}")
    checked = {k: check_limit(k, v) for k, v in data.items()}
    return {k: v for k, v in checked.items() if v is not None}


class NotRoundTrip(EncodeError):
    """A value msgpack encodes but cannot decode again (a dict key that would come back
    as a list or a dict: a tuple, frozenset or model key).

    Attributes:
        type_name: the offending key's type ("" if not found).
        path: where it is in the value, e.g. ``['pairs'][(1, 2)]``.
    """

    def __init__(self, type_name: str, path: str, where: str, detail: str = "") -> None:
        if type_name:
            what = (f"the dict key at {path or 'the top level'} is a {type_name}, which "
                    "msgpack cannot bring back as a key (it would come back as a list); use "
                    "str, int, float, bool, bytes or None keys (e.g. '1,2' for (1, 2))")
        else:
            what = f"it encodes but does not decode again ({detail})"
        Exception.__init__(self, f"cannot store {where}: {what}")
        self.type_name = type_name
        self.path = path


_KEY_TYPES = (str, bytes, int, float, bool, type(None))


def bad_key_path(value: object, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """Find a dict key in ``value`` that msgpack cannot bring back as a key: return
    ``(path, key type)``, or None. Only walked after a decode failed (it is slow)."""
    if depth > 600:  # msgpack refuses deeper values anyway
        return None
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        value = dump(mode="json")
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}[{_show(key)}]"
            if not isinstance(key, _KEY_TYPES):
                return here, type(key).__name__
            found = bad_key_path(item, here, depth + 1)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            found = bad_key_path(item, f"{path}[{i}]", depth + 1)
            if found is not None:
                return found
    return None


def pack_roundtrip(value: object, *, where: str, limit: int | None = None) -> bytes:
    """`pack` ``value`` and check that the bytes decode again, so that what is committed
    can always be loaded (a state after a crash, a message by its agent).

    Raises:
        EncodeError: a value msgpack cannot carry; `NotRoundTrip` when it packs but would
            not decode.
        PayloadTooLarge: over ``limit``.
    """
    data = pack(value, where=where, limit=limit)
    try:
        msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        found = bad_key_path(value)
        if found is None:
            raise NotRoundTrip("", "", where, str(exc)) from None
        raise NotRoundTrip(found[1], found[0], where) from None
    return data
