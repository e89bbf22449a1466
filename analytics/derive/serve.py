"""The serving warehouse from a lake (issue 16): `python -m analytics serve --lake --warehouse`.

At national scale the canonical tables live in a lake (`etl.lake`) and the day facts are derived
there (`analytics.derive.lake`); the dashboard and the statistics still read one DuckDB file.
`serve` builds that file from the lake's newest version:

1. Refuses a lake that was never loaded or never derived, or whose derive read other base files
   (participants, institutions, events, responses) than its newest version lists: the day facts
   would not be the data's.
2. Builds a new warehouse file through the load's own writer (`etl.warehouse.build_next`, fresh:
   the schema, not a copy of the live file): the writers' lock, an owner-only private folder,
   CHECKPOINT, fsync, `os.replace`. A kill at any point leaves the previous file live.
3. Copies every contract table of the lake's version into it (`etl.lake.copy_tables`) but the
   events' rows: the `events` table exists, empty; meta `events_in_lake` says where the log is,
   and what would read it refuses (`rollups.temporary_facts`, scoped exports, a load). Meta
   `data_version` is the lake's version; `key_fingerprint` the lake's.
4. Reads the day facts from `LAKE/derived/` (cast to the warehouse's types) and runs the rest
   of a load's derive on them (`materialise.refresh` with the facts in place): the result
   tables, then the cubes and month masks (`rollups.build_cubes`, from the facts in the file).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from analytics.derive import lake as derived
from analytics.derive import rollups
from etl import lake as lakes
from etl import phases, privacy, schema
from etl.pseudonym import FINGERPRINT_KEY
from etl.warehouse import build_next, data_version

__all__ = ["Served", "serve", "check_derived"]

# The contract tables a serving warehouse holds whole: all but the event log.
TABLES = (*lakes.WHOLE, *lakes.APPENDED, schema.RESPONSES.name)
FACTS = tuple(st.name for st in rollups.fact_steps() if not st.temp)


@dataclass(frozen=True)
class Served:
    """What `serve` built: the lake's version (the warehouse's data version) and the rows of
    each table copied from the lake."""
    version: int
    counts: dict[str, int]


def check_derived(lake: Path | str) -> tuple[lakes.Snapshot, dict]:
    """The lake's newest version and its derive's manifest; `LakeError` (one line, naming the
    folder) when the lake was never loaded, never derived, or derived from other files than
    its newest version's (a load came after the derive)."""
    lake = Path(lake)
    snap = lakes.snapshot(lake)
    if snap.version == 0:
        raise derived.LakeError(f"{lake}: not a lake that 'python -m etl load --lake' wrote (no "
                                f"{lakes.LOG}/ entry); load into it first")
    manifest_path = lake / "derived" / derived.MANIFEST
    if not manifest_path.exists():
        raise derived.LakeError(f"{lake}: never derived; run 'python -m analytics derive --lake "
                                f"{lake}' first")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    now = derived.inventory(lake, derived.base_paths(lake, snap))

    def files(inputs: dict) -> dict[str, dict[str, int]]:
        # A lake file's name is its load's own; the size guards a file rewritten in place.
        return {f: {k: v[0] for k, v in fs.items()} for f, fs in inputs.items()}

    if files(manifest.get("inputs", {})) != files(now):
        at = manifest.get("version")
        raise derived.LakeError(
            f"{lake}: derived {'at version ' + str(at) if at else 'from other files'}, but the "
            f"lake is at version {snap.version}; run 'python -m analytics derive --lake {lake}' "
            "again first")
    missing = [t for t in FACTS if not (lake / "derived" / t).is_dir()]
    if missing:
        raise derived.LakeError(f"{lake}: derived without {', '.join(missing)}; run 'python -m "
                                f"analytics derive --lake {lake} --full' first")
    return snap, manifest


def _read_facts(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    """The day facts of `LAKE/derived/`, each in its warehouse table (the schema's types)."""
    for name in FACTS:
        table = rollups.ROLLUP_TABLES[name]
        cols = ", ".join(f'"{c}"' for c in table.column_names)
        con.execute(f'DROP TABLE IF EXISTS "{name}"')
        con.execute(schema.ddl(table))
        folder = lake / "derived" / name
        if any(folder.rglob("*.parquet")):  # e.g. no answers yet: the derive wrote no file
            con.execute(
                f'INSERT INTO "{name}" ({cols}) SELECT {", ".join(derived.typed_columns(table))} '
                f"FROM read_parquet('{folder}/**/*.parquet', hive_partitioning = true, "
                "union_by_name = true)")


def serve(lake: Path | str, warehouse: Path | str, *, lock_timeout: float = 600.0,
          on_wait: Callable[[], None] | None = None,
          progress: Callable[[str], None] | None = None) -> Served:
    """Build the serving warehouse `warehouse` from the newest version of `lake` (see the
    module's docstring) and swap it in; returns what was copied."""
    from analytics.derive.materialise import refresh

    lake = Path(lake).absolute()
    say = progress or (lambda _m: None)
    snap, _manifest = check_derived(lake)
    counts: dict[str, int] = {}
    with build_next(warehouse, lock_timeout=lock_timeout, on_wait=on_wait, fresh=True) as con:
        say(f"copying the tables of {lake} (version {snap.version})")
        lakes.copy_tables(con, lake, snap, TABLES)
        for t in (*TABLES, schema.EVENTS.name):
            counts[t] = con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
        meta = {"data_version": str(snap.version),
                schema.META_EVENTS_IN_LAKE: json.dumps({"lake": str(lake),
                                                        "version": snap.version})}
        if snap.fingerprint:
            meta[FINGERPRINT_KEY] = snap.fingerprint
        con.execute("DELETE FROM meta WHERE key IN (SELECT unnest(?::VARCHAR[]))", [list(meta)])
        con.executemany("INSERT INTO meta VALUES (?, ?)", [[k, v] for k, v in meta.items()])
        privacy.mask_stored_personal_data(con)  # the lake's rows are masked: records the flag
        say("reading the day facts")
        _read_facts(con, lake)
        con.execute("INSERT INTO meta VALUES (?, ?)",
                    [rollups.META_FACTS_VERSION, str(data_version(con))])
        say("computing result tables")
        refresh(con, day_facts=rollups.Facts(), progress=progress)
        phases.reached("derive")
    return Served(snap.version, counts)
