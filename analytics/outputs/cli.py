"""`python -m analytics`: export the result tables for researchers, or recompute them.

A thin layer over `analytics.outputs.export` and `analytics.derive.materialise`: it parses
arguments, prints one clear line per problem and sets the exit status:

  0  done
  1  the export or refresh could not run (the message says why)
  2  the command line was wrong
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from analytics import suppression
from analytics.derive import materialise
from analytics.derive.lake import LakeError
from analytics.outputs import export as ex
from etl.errors import EtlError
from etl.warehouse import DEFAULT_WAREHOUSE

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

EPILOG = """examples:
  python -m analytics export prepost                          prepost_v7.csv in this folder
  python -m analytics export prepost --format xlsx            prepost_v7.xlsx
  python -m analytics export reliability --out rel.parquet    format taken from the suffix
  python -m analytics export prepost --by modality            only the rows grouped by modality
  python -m analytics export scale_scores --by country        adds each participant's country
  python -m analytics export attrition --warehouse /srv/ei/warehouse.duckdb
  python -m analytics export prepost --min-cell 5             suppress groups under 5
  python -m analytics export prepost --min-cell 0             unsuppressed (row-level access)
  printf '%s' "$PW" | python -m analytics export prepost --min-cell 0 --user ana --password-stdin
                                                              the same where accounts exist
  python -m analytics export --all --out exports/             every table + datapackage.json
  python -m analytics refresh                                 recompute the stored tables
  python -m analytics downloads scale_scores --format xlsx    ready the Data page's file
  python -m analytics downloads --all --format csv            ready its zip of every table
  python -m analytics derive --lake /data/lake                a lake's facts and cubes (DuckDB)
  python -m analytics derive --lake /data/lake --engine spark --master spark://head:7077
  python -m analytics serve --lake /data/lake --warehouse /srv/ei/warehouse.duckdb
                                                              the dashboard's file from a lake
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong command line is one line on stderr and exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m analytics", description=__doc__.split("\n\n")[0],
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)
    e = sub.add_parser(
        "export", help="write a result table (or --all of them, with a codebook)",
        description="Write a result table as CSV (UTF-8 with BOM), XLSX or Parquet. Every row "
                    "carries data_version and generated_at; XLSX adds an 'about' sheet, Parquet "
                    "the same facts as file metadata. The warehouse is opened read-only. Stored "
                    "results of the current data version are used; if they are missing or "
                    "stale, or another --min-cell is asked for, the tables are computed for this "
                    "export only and a note says so.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("table", nargs="?", choices=ex.TABLES, metavar="TABLE",
                   help=f"one of {', '.join(ex.TABLES)}, e.g. 'prepost'")
    e.add_argument("--all", action="store_true",
                   help="every table plus datapackage.json and CODEBOOK.md into --out DIR, "
                        "e.g. --all --out exports/")
    e.add_argument("--format", choices=ex.FORMATS, metavar="FORMAT",
                   help="csv, xlsx or parquet (default: the suffix of --out, else csv), "
                        "e.g. --format xlsx")
    e.add_argument("--out", type=Path, metavar="FILE",
                   help="file to write (a folder with --all; default: "
                        "TABLE[_by_DIM]_vVERSION.FORMAT here), e.g. --out prepost.csv")
    e.add_argument("--by", metavar="DIMENSION",
                   help="prepost/attrition: only that grouping's rows; scale_scores: add that "
                        f"column. One of {', '.join(('overall',) + materialise.GROUP_DIMENSIONS)}"
                        ", e.g. --by modality")
    e.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE, metavar="PATH",
                   help=f"warehouse file (default: {DEFAULT_WAREHOUSE}; env "
                        "EXCHANGE_IMPACT_WAREHOUSE), e.g. --warehouse /srv/ei/warehouse.duckdb")
    e.add_argument("--min-cell", type=int, default=suppression.MIN_CELL, metavar="K",
                   help=f"suppress groups with fewer than K participants (default "
                        f"{suppression.MIN_CELL}); 0 = unsuppressed, for people with "
                        "row-level access only, e.g. --min-cell 0")
    _account_args(e)
    r = sub.add_parser(
        "refresh", help="recompute the stored result tables (a new data version)",
        description="Recompute every result table and store it, through the same atomic "
                    "build-and-swap as a load (the data version goes up by one). Needed when "
                    "a load ran without the statistics layer, or to change the stored "
                    "suppression threshold.",
        epilog="example: python -m analytics refresh --warehouse data/warehouse.duckdb",
    )
    r.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE, metavar="PATH",
                   help="warehouse file, e.g. --warehouse /srv/ei/warehouse.duckdb")
    r.add_argument("--min-cell", type=int, default=suppression.MIN_CELL, metavar="K",
                   help="suppression threshold to store (default "
                        f"{suppression.MIN_CELL}), e.g. --min-cell 20")
    _account_args(r)
    d = sub.add_parser(
        "downloads", help="build a Data page download into the cache beside the warehouse",
        description="Build one of the Data page's download files for the warehouse's current "
                    "data version into WAREHOUSE.downloads/ (owner-only), where the page serves "
                    "it from. The page starts this itself on a first click; run it after a load "
                    "to have the files ready. A file already built is left as it is.",
        epilog="example: python -m analytics downloads scale_scores --format xlsx",
    )
    d.add_argument("table", nargs="?", choices=ex.TABLES, metavar="TABLE",
                   help=f"one of {', '.join(ex.TABLES)}, e.g. 'prepost'")
    d.add_argument("--all", action="store_true",
                   help="the zip of every table with datapackage.json and CODEBOOK.md")
    d.add_argument("--format", choices=ex.FORMATS, default="csv", metavar="FORMAT",
                   help="csv, xlsx or parquet (default csv), e.g. --format xlsx")
    d.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE, metavar="PATH",
                   help="warehouse file, e.g. --warehouse /srv/ei/warehouse.duckdb")
    d.add_argument("--min-cell", type=int, default=suppression.MIN_CELL, metavar="K",
                   help=f"suppression threshold (default {suppression.MIN_CELL}, the "
                        "dashboard's)")
    d.add_argument("--program", action="append", default=[], metavar="ID",
                   help="only this program's exchanges (repeat for several): the file of an "
                        "account limited to it, e.g. --program=Bridges")
    d.add_argument("--cluster", action="append", default=[], metavar="ID",
                   help="only the participants of this cluster's institutions (repeat for "
                        "several), e.g. --cluster=C1")
    d.add_argument("--round-to", type=int, metavar="N",
                   help="round counts to a multiple of N (a funder's file), e.g. --round-to 5")
    _account_args(d)
    # Set by the dashboard when it starts a build (analytics.outputs.downloads.request).
    d.add_argument("--build-id", help=argparse.SUPPRESS)
    d.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)
    v = sub.add_parser(
        "derive", help="derive a lake's day facts and cubes on DuckDB or Spark (scale-out, "
                       "issue 16)",
        description="Run the derive step's statements over a lake of Parquet tables "
                    "(participants, institutions, events, responses; events may be "
                    "Hive-partitioned): the day facts (person keys, local hours, days, answer "
                    "days), then from them the dashboard's cubes and month masks. Writes them "
                    "to LAKE/derived/. The same statements run on both engines.",
        epilog="example: python -m analytics derive --lake /data/lake --engine spark",
    )
    v.add_argument("--lake", type=Path, required=True, metavar="PATH",
                   help="the lake's folder, e.g. --lake /data/lake")
    v.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="duckdb (default, this machine) or spark")
    v.add_argument("--master", default="local[*]", metavar="URL",
                   help="Spark's master as Spark takes it (default local[*]), e.g. "
                        "--master spark://head:7077")
    v.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="a Spark setting (repeat for several), e.g. "
                        "--conf spark.driver.memory=8g")
    v.add_argument("--full", action="store_true",
                   help="derive everything, even when only new event files came since the "
                        "last derive (which re-derives only their days' facts, then the "
                        "cubes in full)")
    sv = sub.add_parser(
        "serve", help="build the serving warehouse from a derived lake (scale-out, issue 16)",
        description="Build the dashboard's warehouse file from the lake's newest version: "
                    "every contract table but the events' rows (they stay in the lake), the "
                    "day facts of its derive, then the result tables and cubes as a load "
                    "computes them; swapped in atomically, as a load's. Refused when the lake "
                    "was not derived since its last load.",
        epilog="example: python -m analytics serve --lake /data/lake --warehouse "
               "/srv/ei/warehouse.duckdb",
    )
    sv.add_argument("--lake", type=Path, required=True, metavar="PATH",
                    help="the lake's folder, e.g. --lake /data/lake")
    sv.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE, metavar="PATH",
                    help=f"the warehouse file to build (default: {DEFAULT_WAREHOUSE}; env "
                         "EXCHANGE_IMPACT_WAREHOUSE), e.g. --warehouse /srv/ei/warehouse.duckdb")
    return p


def _account_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", metavar="NAME",
                   help="the account running this (env EXCHANGE_IMPACT_USER); needed where "
                        "accounts exist for --min-cell below k and row-level tables "
                        "(scale_scores, --all); an account limited to programs or clusters "
                        "exports those only, a funder's counts are rounded, e.g. --user ana")
    p.add_argument("--password-stdin", action="store_true",
                   help="read --user's password from standard input (else env "
                        "EXCHANGE_IMPACT_PASSWORD), e.g. printf '%%s' \"$PW\" | … "
                        "--password-stdin")


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")


def _resolve_format(args: argparse.Namespace) -> str:
    suffix = args.out.suffix.lower().lstrip(".") if args.out and not args.all else ""
    if args.format and suffix and suffix in ex.FORMATS and suffix != args.format:
        raise ex.ExportError(f"--format {args.format} does not match the file name {args.out}")
    if args.format:
        return args.format
    if suffix:
        if suffix not in ex.FORMATS:
            raise ex.ExportError(f"cannot tell the format from {args.out}; add --format "
                                 f"({', '.join(ex.FORMATS)})")
        return suffix
    return "csv"


def cmd_export(args: argparse.Namespace) -> int:
    from etl.warehouse import connect_read_only

    if args.all == bool(args.table):
        raise ex.ExportError("name one TABLE or use --all (e.g. 'export prepost' or "
                             "'export --all --out exports/')")
    if args.all and args.out is None:
        raise ex.ExportError("--all needs --out DIR, the folder to write into")
    if args.all and args.by:
        raise ex.ExportError("--by applies to one table, not to --all")
    if args.min_cell < 0:
        raise ex.ExportError(f"--min-cell must be 0 or more, got {args.min_cell}")
    fmt = args.format = _resolve_format(args)
    args.caller = authorise(args, "cli-export", scoped=True)
    # --user limited to programs: the tables of its scope; a funder: counts rounded
    scope, round_to = ex.audience(args.account)
    args.scope, args.round_to = scope, round_to
    if scope is not None:
        _say(f"note: {args.caller} is limited to {scope.describe()}: the tables are computed "
             "from those participants only")
    if args.min_cell < suppression.MIN_CELL:
        _say(f"warning: --min-cell {args.min_cell} writes groups smaller than "
             f"{suppression.MIN_CELL} {'unsuppressed' if args.min_cell == 0 else ''}"
             .rstrip() + "; share the file only with people who have row-level access")
    # The warning above is the command line's explicit request for unsuppressed output;
    # `authorise` has checked that the caller's role may make it.
    unsuppressed = args.min_cell < suppression.MIN_CELL
    con = connect_read_only(args.warehouse)
    try:
        if args.all:
            files, note = ex.export_all(con, args.out, fmt, min_cell=args.min_cell,
                                        unsuppressed=unsuppressed, scope=scope,
                                        round_to=round_to)
            if note:
                _say(f"note: {note}")
            print(f"wrote {len(files)} files to {args.out}: "
                  + ", ".join(f.name for f in files))
            _audit(args, "all tables", None)
            return EXIT_OK
        e = ex.build_export(con, args.table, fmt, by=args.by, min_cell=args.min_cell,
                            unsuppressed=unsuppressed, scope=scope, round_to=round_to)
    finally:
        con.close()
    if e.note:
        _say(f"note: {e.note}")
    out = args.out or Path(e.filename)
    if out.exists() and out.is_dir():
        out = out / e.filename
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(e.data)
    print(f"wrote {out}: {e.table}, {e.rows:,} rows, data version {e.data_version}, "
          f"generated {e.generated_at}, min cell {e.min_cell}")
    _audit(args, f"{e.table} -> {out}", e.data_version)
    return EXIT_OK


class AccessError(ex.ExportError):
    """The caller may not run this export (the message says which account or role would)."""


def deployment_k(warehouse: Path) -> int:
    """The k below which output counts as unsuppressed: the larger of this process's k
    (`suppression.MIN_CELL`) and the k the warehouse's stored results were suppressed at
    (else the default), so that setting the environment variable to 0 for one command does not
    step around the role check."""
    from etl.warehouse import connect_read_only

    stored = None
    if Path(warehouse).exists():
        con = connect_read_only(warehouse)
        try:
            state = materialise.stored_state(con)
            stored = state.min_cell if state is not None else None
        finally:
            con.close()
    return max(suppression.MIN_CELL, suppression.DEFAULT_K if stored is None else stored)


def _needs(args: argparse.Namespace) -> list[str]:
    """The capabilities (etl.accounts.CAPABILITIES) this request needs beyond an aggregate
    export at the deployment's k."""
    need = []
    if args.min_cell < deployment_k(args.warehouse):
        need.append("unsuppressed")
    if getattr(args, "all", False) or getattr(args, "table", None) in ex.ROW_LEVEL_TABLES:
        need.append("rowlevel")
    return need


def authorise(args: argparse.Namespace, action: str, *, scoped: bool = False) -> str:
    """Who runs this export, as the audit log names them, after the role check of issue 14;
    the account (or None) is left in `args.account`.

    No accounts beside the warehouse (a single-user machine): anyone who can read the warehouse
    may, as before; the log says "(no accounts) <os user>". Accounts exist: a request for
    unsuppressed (--min-cell below k) or row-level output needs an account (--user NAME and
    its password on stdin, or env EXCHANGE_IMPACT_USER/EXCHANGE_IMPACT_PASSWORD) whose role has
    those capabilities, and whose scope is all programs unless the command computes the
    account's scope (`scoped`: export); others are refused, and the refusal is logged. An
    aggregate export at k stays open to the OS user.
    """
    import getpass

    from etl import accounts

    args.account = None
    wh, os_user = args.warehouse, getpass.getuser()
    if not accounts.has_accounts(wh):
        return f"(no accounts) {os_user}"
    need = _needs(args)
    name, password = accounts.command_credentials(args.user, args.password_stdin)
    if not name:
        if not need:
            return f"os:{os_user}"
        _refuse(args, action, f"os:{os_user}", f"{' and '.join(need)} output needs an account "
                f"here (accounts exist in {accounts.accounts_file(wh)}): give --user NAME "
                "--password-stdin of an admin or researcher")
    acct = accounts.verify(wh, name, password) if password else None
    if acct is None:
        _refuse(args, action, f"os:{os_user} as {name[:100]}", f"wrong account name or password "
                f"for --user {name[:100]} (give the password on stdin with --password-stdin)")
    missing = [c for c in need if not accounts.can(acct.role, c)]
    if missing:
        _refuse(args, action, acct.name, f"the role {acct.role} of {acct.name} may not export "
                f"{' or '.join(missing)} tables (admins and researchers may)")
    if need and acct.scoped and not scoped:
        _refuse(args, action, acct.name, f"{acct.name} is limited to "
                f"{', '.join([*acct.programs, *acct.clusters])}, and the export holds every "
                "program; ask an admin for the file")
    args.account = acct
    return acct.name


def _refuse(args: argparse.Namespace, action: str, who: str, why: str) -> NoReturn:
    from etl import accounts

    accounts.record(args.warehouse, who, f"{action}-refused", _target(args), _options(args),
                    None)
    raise AccessError(why)


def _target(args: argparse.Namespace) -> str:
    return "all tables" if getattr(args, "all", False) else str(getattr(args, "table", None))


def _options(args: argparse.Namespace) -> dict[str, object]:
    scope, round_to = getattr(args, "scope", None), getattr(args, "round_to", None)
    return {"by": getattr(args, "by", None), "min_cell": args.min_cell,
            "format": getattr(args, "format", None),
            **({"scope": scope.describe()} if scope is not None else {}),
            **({"round_to": round_to} if round_to else {})}


def _audit(args: argparse.Namespace, target: str, data_version: object,
           action: str = "cli-export") -> None:
    """Issue 14: the audit log beside the warehouse records who ran the export (the account,
    or the OS user where no account was needed), what, with which options, of which version."""
    from etl import accounts

    accounts.record(args.warehouse, args.caller, action, target, _options(args),
                    None if data_version is None else str(data_version))


def cmd_refresh(args: argparse.Namespace) -> int:
    from etl.warehouse import build_next

    if not args.warehouse.exists():
        raise ex.ExportError(f"{args.warehouse}: no warehouse here; load data first with "
                             "'python -m etl load PATH'")
    # Stored results below the deployment's k would be served to every role: the same check.
    args.caller, lower_k = authorise(args, "cli-refresh"), bool(_needs(args))
    with build_next(args.warehouse) as con:
        res = materialise.refresh(con, min_cell=args.min_cell, progress=lambda m: _say(f"  {m}"))
    print(f"stored the result tables for data version {res.data_version} in "
          f"{res.seconds:.1f} s (min cell {res.min_cell})")
    if lower_k:  # a refresh at the deployment's k is a load's routine: not logged
        _audit(args, "stored result tables", res.data_version, "cli-refresh")
    return EXIT_OK


def cmd_downloads(args: argparse.Namespace) -> int:
    from analytics.outputs import downloads

    if args.all == bool(args.table):
        raise ex.ExportError("name one TABLE or use --all (e.g. 'downloads prepost' or "
                             "'downloads --all --format xlsx')")
    if args.min_cell < 0:
        raise ex.ExportError(f"--min-cell must be 0 or more, got {args.min_cell}")
    if args.build_id is None:
        # The dashboard's own builds (--build-id) were asked for by a logged-in account whose
        # role the page checked; the cache they fill is served only to roles that may read it.
        args.caller = authorise(args, "cli-downloads")
    if args.round_to is not None and args.round_to < 1:
        raise ex.ExportError(f"--round-to must be 1 or more, got {args.round_to}")
    scope = ex.Scope(tuple(args.program), tuple(args.cluster))
    status = downloads.build(args.warehouse, downloads.Artefact(args.table, args.format),
                             min_cell=args.min_cell, build_id=args.build_id,
                             lock_fd=args.lock_fd, scope=scope, round_to=args.round_to)
    if status.path is None:
        _say(f"note: {status.error}")
        return EXIT_OK
    print(f"ready: {status.path}")
    if args.build_id is None:
        _audit(args, f"{_target(args)} -> {status.path}", None, "cli-downloads")
    return EXIT_OK


def cmd_derive(args: argparse.Namespace) -> int:
    from analytics.derive import lake

    conf = dict(c.split("=", 1) for c in args.conf if "=" in c)
    bad = [c for c in args.conf if "=" not in c]
    if bad:
        _say(f"error: --conf {bad[0]}: write a Spark setting as KEY=VALUE, e.g. "
             "--conf spark.driver.memory=8g")
        return EXIT_USAGE
    done = lake.derive(args.lake, engine=args.engine, master=args.master, full=args.full,
                       conf=conf)
    if done.mode == "incremental":
        _say(f"incremental: {len(done.days)} day(s) re-derived"
             + (f" ({done.days[0]} … {done.days[-1]})" if done.days else
                ": no new event files since the last derive"))
    for name, n in done.counts.items():
        _say(f"{name}: {n:,} rows -> {args.lake / 'derived' / name}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from analytics.derive import serve

    done = serve.serve(args.lake, args.warehouse, progress=_say,
                       on_wait=lambda: _say("waiting for another load of the warehouse …"))
    _say(f"{args.warehouse}: data version {done.version} from {args.lake}; the events stay in "
         "the lake")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"export": cmd_export, "refresh": cmd_refresh,
                "downloads": cmd_downloads, "derive": cmd_derive,
                "serve": cmd_serve}[args.command](args)
    except (ex.ExportError, materialise.ResultsError, EtlError, LakeError) as e:
        from etl.warehouse import out_of_memory

        hint = out_of_memory(e, command=args.command) if args.command == "refresh" else None
        # refresh writes through build_next: on any error the live warehouse is untouched
        _say(f"error: {e}" if hint is None else
             f"error: {e}; {hint}; the warehouse was left as it was before this command")
        return EXIT_ERROR
    except OSError as e:
        _say(f"error: {e.filename or ''}: {e.strerror or e}".replace(": : ", ": "))
        return EXIT_ERROR
    except Exception as e:  # out of memory outside a result table (writing, rollups)
        from etl.warehouse import out_of_memory

        hint = out_of_memory(e, command=args.command) if args.command == "refresh" else None
        if hint is None:
            raise
        _say(f"error: {args.warehouse}: {hint}; the warehouse was left as it was before this "
             "command")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say("interrupted: nothing was written to the warehouse")
        return 130
