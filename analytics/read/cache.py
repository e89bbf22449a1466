"""The read layer's per-process answer cache, keyed by the warehouse's data version.

Results are cached per process in a `QueryCache` bounded by bytes and keyed by (warehouse
build, query, arguments): the warehouse only changes through a new data version, so a cached
answer is never stale, and nothing is shared across gunicorn workers (each forks with an empty
cache). `@cached` wraps a query function whose first argument is the request's cursor.

Answers leave the cache through `analytics.read.rounding.apply`: the cached value is exact, and
a funder's call gets its counts rounded (issue 14; the key is the query, not the role).

The build's key is read from the file's `meta` (`version_key`), once per open file when the
caller says which cursor it is answering on (`bound_version`, as the dashboard's `_ui.query`
does): asking the file on every cached call cost about 1 ms of a warm callback's ~8 ms.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from functools import wraps
from typing import Any

import duckdb
import pandas as pd

from analytics.read import rounding
from etl import schema

__all__ = ["QueryCache", "CACHE", "bound_version", "cached", "clear_cache", "cache_keys",
           "version_key", "sizeof"]


def sizeof(obj: Any) -> int:
    """Approximate bytes held by a cache key or value: DataFrames by pandas' deep memory
    usage, containers by their items, anything else by sys.getsizeof."""
    if isinstance(obj, pd.DataFrame | pd.Series):
        return int(obj.memory_usage(index=True, deep=True).sum()
                   if isinstance(obj, pd.DataFrame) else obj.memory_usage(index=True, deep=True))
    if isinstance(obj, Mapping):
        return sys.getsizeof(obj) + sum(sizeof(k) + sizeof(v) for k, v in obj.items())
    if isinstance(obj, list | tuple | set | frozenset):
        return sys.getsizeof(obj) + sum(sizeof(x) for x in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sys.getsizeof(obj) + sum(sizeof(getattr(obj, f.name))
                                        for f in dataclasses.fields(obj))
    return sys.getsizeof(obj)


class QueryCache:
    """Least-recently-used answers of the read queries, bounded by their size in bytes.

    Keys and values are both counted (`sizeof`): an entry above `max_entry_bytes` is not kept
    at all, and the oldest entries go once the total passes `max_bytes`. A count bound would
    not do: a key is as large as the filter lists a request sends, and a value as large as the
    rows it returns. Thread-safe (threaded servers share it); one per process."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        if max_bytes < 0 or max_entry_bytes < 0:
            raise ValueError("cache bounds must be 0 or more bytes")
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """Bytes the cached keys and values hold, as counted on insertion."""
        return self._bytes

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._items)

    def get(self, key: tuple) -> tuple[bool, Any]:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return False, None
            self._items.move_to_end(key)
            return True, hit[0]

    def put(self, key: tuple, value: Any) -> bool:
        """Keep `value` under `key` unless it is too large; True when kept."""
        size = sizeof(key) + sizeof(value)
        if size > self.max_entry_bytes:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, freed) = self._items.popitem(last=False)
                self._bytes -= freed
        return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def _mb_env(name: str, default: float) -> int:
    try:
        return int(float(os.environ.get(name, default)) * 2**20)
    except ValueError:
        return int(default * 2**20)


# Per process: 64 MB of answers by default (the dashboard's figures read rollups of a few
# thousand rows; a page's answers are a few hundred kB), one entry at most 8 MB.
CACHE = QueryCache(_mb_env("EXCHANGE_IMPACT_QUERY_CACHE_MB", 64),
                   _mb_env("EXCHANGE_IMPACT_QUERY_CACHE_ENTRY_MB", 8))


def clear_cache() -> None:
    CACHE.clear()


def cache_keys() -> list[tuple]:
    """The keys the query cache holds now, oldest first (for tests and diagnostics)."""
    return CACHE.keys()


# The cursor a request answers on and its file's key, set by `bound_version`.
_BOUND: ContextVar[tuple[duckdb.DuckDBPyConnection, str] | None] = ContextVar(
    "exchange_impact_bound_version", default=None)


def version_key(cur: duckdb.DuckDBPyConnection) -> str:
    """data_version plus the build's random id: two warehouse files never share a key, even when
    built in the same second with the same version (tests swap files; so can `--warehouse`).
    Inside `bound_version(cur, …)` the key is known without a query."""
    bound = _BOUND.get()
    if bound is not None and bound[0] is cur:
        return bound[1]
    return _read_version_key(cur)


@contextlib.contextmanager
def bound_version(cur: duckdb.DuckDBPyConnection, facts: dict) -> Iterator[None]:
    """Answer `version_key(cur)` from `facts` (a dict that lives as long as `cur`'s connection:
    `etl.warehouse.Reader.cursor_and_facts`) for the calls made inside the block on `cur`,
    reading it from the file once per connection. Other cursors still ask their file."""
    key = facts.get("version_key")
    if key is None:
        key = facts["version_key"] = _read_version_key(cur)
    token = _BOUND.set((cur, key))
    try:
        yield
    finally:
        _BOUND.reset(token)


def _read_version_key(cur: duckdb.DuckDBPyConnection) -> str:
    row = cur.execute(
        f"SELECT string_agg(value, '|' ORDER BY key) FROM {schema.META.name} "
        "WHERE key IN ('data_version', 'built_at', 'build_id')"
    ).fetchone()
    return row[0] if row and row[0] else "0"


def cached(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Cache `fn(cur, *args, **kwargs)` in `CACHE` under (its name, the warehouse build,
    its arguments); the module's current `CACHE` is looked up per call (tests swap it). The
    answer is exact in the cache and rounded for the caller on the way out (`rounding`); the
    computation itself runs exact, so read functions that call each other cache exact numbers."""
    @wraps(fn)
    def wrapper(cur: duckdb.DuckDBPyConnection, *args: Any, **kwargs: Any) -> Any:
        key = (fn.__name__, version_key(cur), args, tuple(sorted(kwargs.items())))
        hit, value = CACHE.get(key)
        if not hit:
            with rounding.rounded(None):
                value = fn(cur, *args, **kwargs)
            CACHE.put(key, value)
        return rounding.apply(value)

    return wrapper
