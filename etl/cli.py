"""`python -m etl`: load files, build the demo program, show the warehouse's status.

A thin layer over `etl.load`, `etl.demo` and `etl.warehouse`: it parses arguments, shows
progress, prints one clear line per problem and sets the exit status:

  0  everything loaded cleanly (or nothing changed)
  1  a file was refused whole, or the load could not run (message says why)
  2  the command line was wrong
  3  files loaded, but some rows or answers were rejected (listed; see `python -m etl status`)
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console

from etl import schema, sources
from etl.errors import EtlError
from etl.warehouse import DEFAULT_WAREHOUSE, out_of_memory

if TYPE_CHECKING:
    import duckdb
    from rich.table import Table

    from etl.load import FileReport

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REJECTS = 0, 1, 2, 3

EPILOG = """examples:
  python -m etl demo                                  build the demo program into data/
  python -m etl load exports/                         load a folder, in dependency order
  python -m etl load events_march.csv --kind events   load one file, kind given
  python -m etl status --warehouse /srv/ei/warehouse.duckdb
  python -m etl mapping new qualtrics_pre.csv         start a mapping for an export
  python -m etl inspect qualtrics_pre.csv --mapping qualtrics_pre.mapping.yaml
  python -m etl load qualtrics_pre.csv --mapping qualtrics_pre.mapping.yaml --wave pre
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--warehouse", type=Path, default=DEFAULT_WAREHOUSE, metavar="PATH",
        help=f"warehouse file (default: {DEFAULT_WAREHOUSE}; env EXCHANGE_IMPACT_WAREHOUSE), "
             "e.g. --warehouse /srv/ei/warehouse.duckdb",
    )
    common.add_argument("--quiet", action="store_true",
                        help="no progress, only problems and the final summary lines")
    p = argparse.ArgumentParser(
        prog="python -m etl", description=__doc__.split("\n\n")[0],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ld = sub.add_parser(
        "load", parents=[common], help="load CSV, XLSX or Parquet files or folders",
        description="Load contract files into the warehouse (see the README's input contract). "
                    "Bad rows go to the rejects table with the rule they broke; the good rows "
                    "load. Loading the same file again changes nothing. A load only adds: a "
                    "row with the natural key of an earlier one (same participant, same "
                    "institution id, ...) replaces it, and nothing else is removed unless you ask "
                    "with --replace.",
        epilog="examples:\n"
               "  python -m etl load data/exports/ --warehouse data/warehouse.duckdb\n"
               "  python -m etl load exports/events.csv --replace --dry-run   see what a "
               "corrected file would change\n"
               "  python -m etl load exports/events.csv --replace             then do it\n"
               "  python -m etl load exports/ --lake /data/lake               agency scale: "
               "append to a lake of Parquet files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ld.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                    help="files or folders, e.g. exports/ or events_2026.csv")
    ld.add_argument("--kind", choices=schema.LOAD_ORDER,
                    help="what the files hold (default: the first word of each file name, else "
                         "its columns), e.g. --kind events")
    ld.add_argument("--replace", action="store_true",
                    help="each file replaces what earlier loads of its source brought: rows it no "
                         "longer holds are removed. Refused if the file is empty, entirely "
                         "rejected, or would remove more than half of the source, unless --force")
    ld.add_argument("--source", metavar="NAME",
                    help="the source of a single file (default: its absolute path): name it to "
                         "replace a source that was loaded from another path, e.g. --source "
                         "/srv/exports/events.csv or --source partner-a-events")
    ld.add_argument("--force", action="store_true",
                    help="carry out a --replace that the safety checks refused")
    ld.add_argument("--dry-run", action="store_true",
                    help="validate and count what would be added, changed and removed per table, "
                         "without changing the warehouse")
    ld.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                    help="how long to wait for another load to finish (default 600), e.g. --wait 0")
    ld.add_argument("--lake", type=Path, metavar="DIR",
                    help="load into a lake of Parquet files instead of the warehouse (agency "
                         "scale; README, Scale-out): only the days and exchanges the files touch "
                         "are written; then 'python -m analytics derive --lake DIR'")
    _source_args(ld)
    ins = sub.add_parser(
        "inspect", parents=[common], help="say what files are and what loading them would do",
        description="Per file: detected format, encoding, separator, header rows, row count, "
                    "date range, how its columns map onto the contract, and what a load would "
                    "reject and why. The warehouse is not changed (a private copy is used).",
        epilog="example: python -m etl inspect exports/qualtrics_pre.csv --mapping program.yaml",
    )
    ins.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    ins.add_argument("--kind", choices=schema.LOAD_ORDER, help="what contract files hold")
    _source_args(ins)
    mp = sub.add_parser("mapping", help="write a starting mapping for an export",
                        description="Mappings say what an export cannot: which question is "
                                    "which item, who the participant is, wave and exchange.")
    msub = mp.add_subparsers(dest="mapping_command", required=True, metavar="ACTION")
    mn = msub.add_parser("new", help="write a starting mapping YAML from a file's headers",
                         epilog="example: python -m etl mapping new exports/qualtrics_pre.csv")
    mn.add_argument("file", type=Path, metavar="FILE", help="the export")
    mn.add_argument("--out", type=Path, metavar="PATH",
                    help="where to write it (default: FILE's name + .mapping.yaml beside it)")
    mn.add_argument("--format", choices=[f for f in sources.FORMATS if f not in ("auto", "csv")],
                    help="the export's format, when it is not recognised")
    mn.add_argument("--force", action="store_true", help="write over an existing mapping")
    dm = sub.add_parser(
        "demo", parents=[common], help="generate the demo program and load it",
        description="Write a generated program in the contract's formats (with the true effects "
                    "it simulated in truth.json) and load it. A pseudonymisation key is created "
                    "beside the warehouse if none is set. Run again into the same --out folder, "
                    "it replaces the earlier demo's rows (as load --replace --force would).",
        epilog="example: python -m etl demo --participants 1000 --seed 3 --out /tmp/demo",
    )
    dm.add_argument("--participants", type=int, default=10_000, metavar="N",
                    help="participants to simulate (default 10000), e.g. --participants 1000000")
    dm.add_argument("--seed", type=int, default=7, metavar="S", help="random seed (default 7)")
    dm.add_argument("--out", type=Path, metavar="DIR",
                    help="folder for the generated files (default: demo/ beside the warehouse)")
    _users_parser(sub, common)
    sub.add_parser(
        "status", parents=[common], help="data version, rows per table, last loads",
        description="Print the data version, the row counts per table and the last loads.",
        epilog="example: python -m etl status --warehouse data/warehouse.duckdb",
    )
    return p


def _users_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`users add|remove|list|reset|audit`: accounts beside the warehouse (`etl.accounts`)."""
    from etl.accounts import MIN_PASSWORD, ROLES

    us = sub.add_parser(
        "users", help="manage dashboard accounts, roles and scopes; read the audit log",
        description="Accounts live in accounts.sqlite beside the warehouse. Once one exists, "
                    "every page, callback and download of the dashboard needs a login.",
        epilog="examples:\n"
               "  printf '%s' \"$PW\" | python -m etl users add ana --role lead --program P1 "
               "--password-stdin\n"
               "  python -m etl users list\n  python -m etl users audit --limit 20",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    usub = us.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = usub.add_parser("add", parents=[common], help="create an account")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--cluster", action="append", default=[], metavar="ID",
                     help="limit the account to this cluster (repeat for more)")
    add.add_argument("--program", action="append", default=[], metavar="ID",
                     help="limit the account to this program (repeat for more)")
    add.add_argument("--password-stdin", action="store_true", required=True,
                     help=f"read the password (at least {MIN_PASSWORD} characters) from "
                          "standard input; there is no default password")
    rm = usub.add_parser("remove", parents=[common], help="delete an account")
    rm.add_argument("name", metavar="NAME")
    usub.add_parser("list", parents=[common], help="accounts, roles and scopes (no hashes)")
    rs = usub.add_parser("reset", parents=[common], help="set a new password")
    rs.add_argument("name", metavar="NAME")
    rs.add_argument("--password-stdin", action="store_true", required=True,
                    help="read the new password from standard input")
    au = usub.add_parser("audit", parents=[common], help="who exported or downloaded what")
    au.add_argument("--limit", type=int, default=100, metavar="N")


def cmd_users(args: argparse.Namespace, console: Console, err: Console) -> int:
    from etl import accounts

    wh, action = args.warehouse, args.users_command
    if action == "add":
        a = accounts.add_user(wh, args.name, args.role, accounts.read_password(True),
                              clusters=args.cluster, programs=args.program)
        scope = ", ".join([*(f"cluster {c}" for c in a.clusters),
                           *(f"program {p}" for p in a.programs)]) or "all programs"
        console.print(f"added {a.name} ({a.role}; {scope}) to {accounts.accounts_file(wh)}",
                      markup=False)
    elif action == "remove":
        accounts.remove_user(wh, args.name)
        console.print(f"removed {args.name}", markup=False)
    elif action == "reset":
        accounts.reset_password(wh, args.name, accounts.read_password(True))
        console.print(f"new password set for {args.name}", markup=False)
    elif action == "list":
        users = accounts.list_users(wh)
        if not users:
            console.print(f"no accounts in {accounts.accounts_file(wh)}: the dashboard runs "
                          "without login, on 127.0.0.1 only", markup=False)
        for a in users:
            console.print(f"{a.name}\t{a.role}\tclusters={','.join(a.clusters) or '*'}\t"
                          f"programs={','.join(a.programs) or '*'}\tcreated {a.created_at}",
                          markup=False)
    else:
        for row in accounts.audit_rows(wh, args.limit):
            console.print("\t".join("" if v is None else str(v) for v in row), markup=False)
    return EXIT_OK


def _source_args(p: argparse.ArgumentParser) -> None:
    """The options of exports (Qualtrics, Zoom, ...): format, mapping, wave and exchange."""
    p.add_argument("--format", choices=sources.FORMATS, default="auto",
                   help="the files' format (default auto: an export a reader recognises, else a "
                        "contract file; csv: the contract only), e.g. --format qualtrics")
    p.add_argument("--mapping", type=Path, metavar="FILE.yaml",
                   help="the program's mapping (python -m etl mapping new FILE writes one), "
                        "e.g. --mapping exports/program.yaml")
    p.add_argument("--wave", metavar="W",
                   help="the wave of survey exports that do not say, e.g. --wave pre (not "
                        "with contract files, whose rows carry their own: such a file is refused)")
    p.add_argument("--exchange", metavar="ID",
                   help="the exchange of exports that do not say (Zoom, Teams and Moodle "
                        "reports never do), e.g. --exchange E1 (not with contract files, whose "
                        "rows carry their own: such a file is refused)")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--dayfirst", dest="dayfirst", action="store_const", const=True,
                       help="dates like 04/03/2026 are 4 March (when the file cannot tell)")
    order.add_argument("--monthfirst", dest="dayfirst", action="store_const", const=False,
                       help="dates like 04/03/2026 are 3 April (when the file cannot tell)")


def _mapping_of(args: argparse.Namespace) -> dict:
    """The mapping YAML, with --dayfirst/--monthfirst over its `dayfirst`."""
    mapping = sources.load_mapping(getattr(args, "mapping", None))
    if getattr(args, "dayfirst", None) is not None:
        mapping = {**mapping, "dayfirst": args.dayfirst}
    return mapping


def _print_reports(reports: list[FileReport], console: Console, quiet: bool) -> int:
    code = EXIT_OK
    for r in reports:
        if r.status == "refused":
            console.print(f"error: {r.summary()}", highlight=False, markup=False)
            code = EXIT_ERROR
            continue
        console.print(r.summary(), highlight=False, markup=False)
        for note in r.notes[1 if r.status == "unchanged" else 0:]:
            console.print(f"  note: {note}", highlight=False, markup=False)
        for line in r.first_rejects:
            console.print(f"  {line}", highlight=False, markup=False)
        if r.rows_rejected > len(r.first_rejects):
            console.print(f"  … {r.rows_rejected - len(r.first_rejects):,} more in the rejects "
                          "table ('python -m etl status', Data page)", highlight=False)
        # rejects_by_rule counts every reject of the file, answers refused one by one in rows
        # that otherwise loaded included (rows_rejected counts whole rows only).
        if (r.rows_rejected or r.rejects_by_rule) and code == EXIT_OK:
            code = EXIT_REJECTS
    return code


def cmd_load(args: argparse.Namespace, console: Console, err: Console) -> int:
    from etl.load import load_paths
    from etl.progress import Steps

    dry_run = getattr(args, "dry_run", False)
    lake = getattr(args, "lake", None)
    target = lake or args.warehouse
    if lake is None:
        load = functools.partial(load_paths, warehouse=args.warehouse)
    else:
        from etl.lake import load_into_lake

        load = functools.partial(load_into_lake, lake=lake)
    with Steps(console, quiet=args.quiet) as steps:
        reports = load(
            args.paths, kind=args.kind, source=getattr(args, "source", None),
            replace=getattr(args, "replace", False), force=getattr(args, "force", False),
            dry_run=dry_run, progress=steps.say, lock_timeout=args.wait,
            fmt=getattr(args, "format", None),
            mapping=_mapping_of(args),
            wave=getattr(args, "wave", None), exchange=getattr(args, "exchange", None),
            on_wait=lambda: err.print(f"waiting for another load of {target} to finish "
                                      f"(up to {args.wait:.0f} s)…", highlight=False),
        )
    code = _print_reports(reports, console, args.quiet)
    if dry_run:
        _print_dry_run(reports, console)
    return code


def _print_dry_run(reports: list[FileReport], console: Console) -> None:
    """Per table, what the load would do; the warehouse was not touched."""
    totals: dict[str, list[int]] = {}
    for r in reports:
        if r.status == "loaded":
            t = totals.setdefault(r.kind, [0, 0, 0, 0])
            for i, n in enumerate((r.rows_added, r.rows_changed, r.rows_removed,
                                   r.rows_unchanged)):
                t[i] += n
    for kind in schema.LOAD_ORDER:
        if kind in totals:
            added, changed, removed, unchanged = totals[kind]
            console.print(f"dry run: {kind}: {added:,} added, {changed:,} changed, {removed:,} "
                          f"removed, {unchanged:,} unchanged (nothing was written)")
    if not totals:
        console.print("dry run: nothing would be loaded (nothing was written)")


def cmd_inspect(args: argparse.Namespace, console: Console, err: Console) -> int:
    """Print what each file is and what a load would do; exit 1 if one cannot be read."""
    from etl.inspect import inspect_paths

    found = inspect_paths(args.paths, args.warehouse, fmt=args.format, kind=args.kind,
                          mapping=_mapping_of(args), wave=args.wave,
                          exchange=args.exchange)
    for ins in found:
        if ins.refused:
            err.print(f"error: {ins.text()}", highlight=False, markup=False)
        else:
            console.print(ins.text(), highlight=False, markup=False)
    return EXIT_ERROR if any(i.refused for i in found) else EXIT_OK


def cmd_mapping(args: argparse.Namespace, console: Console, err: Console) -> int:
    from etl.inspect import mapping_new

    out = mapping_new(args.file, args.out, fmt=args.format, force=args.force)
    console.print(f"wrote {out}: fill in the items, wave and exchange, then "
                  f"'python -m etl inspect {args.file} --mapping {out}'", highlight=False,
                  markup=False)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, console: Console, err: Console) -> int:
    from etl.demo import generate_demo
    from etl.pseudonym import resolve_key

    out = args.out or args.warehouse.parent / "demo"
    t0 = time.perf_counter()
    if not args.quiet:
        console.print(f"generating a demo program of {args.participants:,} participants into {out}")
    try:
        generate_demo(out, participants=args.participants, seed=args.seed,
                      progress=not args.quiet)
    except ValueError as e:  # an argument out of range: one line, not a traceback
        raise EtlError(f"etl demo: {e}") from None
    resolve_key(args.warehouse, create=True)
    # A demo written again into the same folder is a new version of the same generated sources:
    # it replaces the earlier demo's rows, as its user expects, and removes nothing else.
    replace = args.warehouse.exists()  # a first demo has nothing to replace
    args.paths, args.kind, args.wait = [out], None, 600.0
    args.replace = args.force = replace
    code = cmd_load(args, console, err)
    if not args.quiet:
        console.print(f"demo ready in {time.perf_counter() - t0:.1f} s: {args.warehouse}")
    # The demo plants bad rows on purpose: their rejection is the expected outcome.
    return EXIT_OK if code == EXIT_REJECTS else code


def cmd_status(args: argparse.Namespace, console: Console, err: Console) -> int:
    import duckdb

    from etl.warehouse import connect_read_only, damaged

    con = connect_read_only(args.warehouse)
    try:
        _status(con, args, console)
    except duckdb.Error as e:  # a damaged file can open and fail on its first broken block
        damage = damaged(args.warehouse, e)
        if damage is None:
            raise
        raise damage from None
    finally:
        con.close()
    return EXIT_OK


def _status(con: duckdb.DuckDBPyConnection, args: argparse.Namespace, console: Console
            ) -> None:
    """Print the data version, the rows per table and the last loads."""
    from rich.table import Table

    from etl.warehouse import data_version

    built = con.execute("SELECT value FROM meta WHERE key = 'built_at'").fetchall()
    console.print(f"warehouse {args.warehouse}: data version {data_version(con)}"
                  f"{', built ' + built[0][0] if built else ''}", highlight=False)
    counts = Table(title="rows per table", title_justify="left")
    counts.add_column("table")
    counts.add_column("rows", justify="right")
    lake = con.execute("SELECT value FROM meta WHERE key = ?",
                       [schema.META_EVENTS_IN_LAKE]).fetchall()
    for name in (*schema.LOAD_ORDER, "rejects", *schema.RESULT_TABLES):
        if name == schema.EVENTS.name and lake:  # a serving warehouse: not 0 events
            where = json.loads(lake[0][0])
            counts.add_row(name, f"in the lake at {where['lake']} (version {where['version']})")
            continue
        try:
            n = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0][0]
        except Exception:  # a result table of an older file: not there yet
            continue
        counts.add_row(name, f"{n:,}")
    console.print(counts)
    console.print(_sources_table(con))
    loads = Table(title="last loads", title_justify="left")
    for c in ("batch", "file", "kind", "status", "in", "accepted", "rejected", "finished"):
        loads.add_column(c, justify="right" if c in ("in", "accepted", "rejected") else "left")
    for row in con.execute(
        "SELECT batch_id, parse_filename(file), kind, status, rows_in, rows_accepted, "
        "rows_rejected, "
        "strftime(finished_at, '%Y-%m-%d %H:%M:%S') FROM load_batches "
        "ORDER BY batch_id DESC LIMIT 15").fetchall():
        loads.add_row(*[f"{v:,}" if isinstance(v, int) and i > 3 else str(v or "")
                        for i, v in enumerate(row)])
    console.print(loads)


def _sources_table(con: duckdb.DuckDBPyConnection) -> Table:
    """Each source (what `--replace` and `--source` name) with the rows it holds now."""
    from rich.table import Table

    held = " UNION ALL ".join(
        f"SELECT '{k}' AS kind, batch_id, count(*) AS n FROM \"{schema.TABLES[k].name}\" "
        "GROUP BY batch_id" for k in schema.LOAD_ORDER)
    table = Table(title="sources (name one with --source; replace it with --replace)",
                  title_justify="left")
    for c in ("source", "kind", "loads", "rows now", "last load"):
        table.add_column(c, justify="right" if c in ("loads", "rows now") else "left")
    for src, kind, loads, rows, last in con.execute(
        "SELECT coalesce(b.source, b.source_name), b.kind, count(DISTINCT b.batch_id), "
        "coalesce(sum(h.n), 0), strftime(max(b.finished_at), '%Y-%m-%d %H:%M') "
        "FROM load_batches b "
        f"LEFT JOIN ({held}) h ON h.batch_id = b.batch_id AND h.kind = b.kind "
        "WHERE b.status = 'loaded' GROUP BY ALL ORDER BY 2, 1").fetchall():
        table.add_row(src, kind, f"{loads:,}", f"{int(rows):,}", last or "")
    return table


_stopping = False


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    # Ctrl-C, or a service manager's SIGTERM: unwind so the half-built file goes. DuckDB turns the
    # interrupt into "RuntimeError: Query interrupted" when it lands inside a query.
    global _stopping
    _stopping = True
    raise KeyboardInterrupt


def ensure_demo_warehouse(warehouse: Path = DEFAULT_WAREHOUSE) -> None:
    """First start of the dashboard: build the demo warehouse if there is none yet.

    Later starts find the file and reuse it. Two starts at once are safe: the second waits for
    the first's lock and then finds everything already loaded.
    """
    from etl.demo import generate_demo
    from etl.load import load_paths
    from etl.progress import Steps
    from etl.pseudonym import resolve_key

    warehouse = Path(warehouse)
    if warehouse.exists():
        return
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"First start: building the demo warehouse {warehouse} (once; later starts "
                  "reuse it)")
    t0 = time.perf_counter()
    out = warehouse.parent / "demo"
    generate_demo(out, participants=10_000, seed=7, progress=True)
    resolve_key(warehouse, create=True)
    with Steps(console) as steps:
        reports = load_paths([out], warehouse, progress=steps.say)
    refused = [r for r in reports if r.status == "refused"]
    if refused:
        raise EtlError(f"{warehouse}: the demo could not be loaded: {refused[0].summary()}")
    rows = sum(r.rows_accepted for r in reports)
    rejected = sum(sum(r.rejects_by_rule.values()) for r in reports)
    console.print(f"demo warehouse ready in {time.perf_counter() - t0:.1f} s: {rows:,} rows "
                  f"loaded; {rejected} deliberately bad values rejected as the demo intends "
                  "(see the Data page)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # logs and pipes: wide enough that tables do not fold
        console = Console(highlight=False, soft_wrap=True, width=160)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return {"load": cmd_load, "demo": cmd_demo, "status": cmd_status, "inspect": cmd_inspect,
                "mapping": cmd_mapping, "users": cmd_users}[args.command](
            args, console, err)
    except EtlError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        return EXIT_ERROR
    except Exception as e:
        hint = out_of_memory(e)
        if hint is None or _stopping:
            return _interrupted_or_raise(e, err)
        err.print(f"error: {args.warehouse}: {hint}; the warehouse was left as it was before "
                  "this command", highlight=False, markup=False)
        return EXIT_ERROR
    except KeyboardInterrupt as e:
        return _interrupted_or_raise(e, err)


def _interrupted_or_raise(e: BaseException, err: Console) -> int:
    """The signal surfaces as whatever was running: KeyboardInterrupt in Python, DuckDB's "Query
    interrupted" RuntimeError, or an ImportError when it lands in a module's import. Anything
    else is a bug, raised as it is."""
    if not (isinstance(e, KeyboardInterrupt) or _stopping):
        raise e
    err.print("interrupted: the warehouse was left as it was before this command")
    return 130
