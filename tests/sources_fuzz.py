"""Fuzzing shared by the source readers' tests: a reader given mangled, truncated or wrongly
encoded bytes either reads them or refuses the file with one clear line, never another error."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from etl.errors import RefusedFile
from tests import program as P

# shared/ lies beside the checkout (here and on CI), or beside the checkout of which this is a
# git worktree (two levels up); SHARED_SAMPLES points elsewhere.
SAMPLES = Path(os.environ.get("SHARED_SAMPLES") or next(
    (d for d in (P.ROOT.parent / "shared" / "samples", P.ROOT.parent.parent / "shared" / "samples")
     if d.is_dir()), P.ROOT.parent / "shared" / "samples"))


def mangle(data: bytes, seed: int) -> bytes:
    """One of: cut short, bytes overwritten, bytes dropped, a line duplicated, re-encoded."""
    rng = random.Random(seed)
    how = rng.randrange(6)
    if how == 0 and data:
        return data[: rng.randrange(len(data))]
    if how == 1 and data:
        b = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if how == 2 and data:
        i = rng.randrange(len(data))
        return data[:i] + data[i + rng.randint(1, 40):]
    if how == 3:
        lines = data.splitlines(keepends=True)
        if lines:
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i].replace(b",", b";", 1))
        return b"".join(lines)
    if how == 4:
        try:
            return data.decode("utf-8").encode(rng.choice(["utf-16-le", "utf-16", "cp1252",
                                                           "utf-8-sig", "latin-1"]),
                                               errors="replace")
        except UnicodeDecodeError:
            return data[::-1]
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))


def check_read_or_refused(read: Callable[[], pa.Table]) -> None:
    """The reader's outcome is a table of the events' columns or a one-line RefusedFile."""
    try:
        t = read()
    except RefusedFile as e:
        msg = str(e)
        assert "\n" not in msg and "refused:" in msg and len(msg) < 600, msg
        return
    assert t.column_names == ["participant_id", "exchange_id", "occurred_at", "activity",
                              "minutes", "_row"]
    assert t.schema.field("_row").type == pa.int64()
