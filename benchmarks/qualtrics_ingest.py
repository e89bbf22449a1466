"""Qualtrics exports through the real loader against the same responses as a contract CSV.

Generates a roster (one cluster, institution and exchange, N participants) and N survey
responses twice: as the contract's wide `responses.csv`, and as a Qualtrics export of the same
answers (three header rows, Qualtrics' metadata columns with IP addresses and e-mails, one
unfinished response in fifty). Each is loaded by `etl.load.load_paths` into its own copy of a
warehouse that holds the roster, in the same run; prints rows/s of each and the ratio. The
issue's target: the export loads at no less than half the contract CSV's rate.

    python benchmarks/qualtrics_ingest.py                      # 1,000,000 responses
    python benchmarks/qualtrics_ingest.py --responses 100000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ITEMS = ["icc_1", "icc_2", "icc_3", "icc_4"]


def _copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    con.execute(f"COPY ({sql}) TO '{path}' (HEADER false, DELIMITER ',', QUOTE '\"')")


def generate(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "roster").mkdir()
    (folder / "roster" / "clusters.csv").write_text("cluster_id,name,kind\nC1,One,cluster\n")
    (folder / "roster" / "institutions.csv").write_text(
        "institution_id,name,country,cluster_id,timezone,kind\n"
        "I1,School,DE,C1,Europe/Berlin,school\n")
    (folder / "roster" / "exchanges.csv").write_text(
        "exchange_id,name,program,cluster_id,modality,setting,purpose,language,start_date,"
        "end_date\nE1,X,P,C1,virtual,curricular,p,en,2026-01-01,2026-12-31\n")
    con = duckdb.connect()
    con.execute("CREATE TABLE r AS SELECT i, 'P' || lpad(i::VARCHAR, 8, '0') AS pid, "
                "TIMESTAMP '2026-03-01' + to_seconds(i * 7) AS ts, "
                + ", ".join(f"1 + (hash(i, {k}) % 5)::INTEGER AS q{k}" for k in range(4))
                + f", i % 50 = 49 AS unfinished FROM range({n}) t(i)")
    con.execute(f"COPY (SELECT pid AS participant_id, 'I1' AS institution_id, 'student' AS role "
                f"FROM r) TO '{folder / 'roster' / 'participants.csv'}' (HEADER)")
    con.execute("COPY (SELECT pid AS participant_id, 'E1' AS exchange_id, 'pre' AS wave, "
                "strftime(ts, '%Y-%m-%d %H:%M:%S') AS submitted_at, "
                + ", ".join(f"q{k} AS icc_{k + 1}" for k in range(4))
                + f" FROM r WHERE NOT unfinished) TO '{folder / 'responses.csv'}' (HEADER)")
    meta = ["StartDate", "EndDate", "Status", "IPAddress", "Progress", "Duration (in seconds)",
            "Finished", "RecordedDate", "ResponseId", "RecipientLastName", "RecipientFirstName",
            "RecipientEmail", "ExternalReference", "LocationLatitude", "LocationLongitude",
            "DistributionChannel", "UserLanguage"]
    tags = [f"Q1_{k}" for k in range(1, 5)]
    ids = [json.dumps({"ImportId": m[0].lower() + m[1:]}) for m in meta] + [
        json.dumps({"ImportId": f"QID1_{k}"}) for k in range(1, 5)]
    body = folder / "body.csv"
    _copy(con, "SELECT strftime(ts, '%Y-%m-%d %H:%M:%S') AS s, s AS e, '0', "
               "'10.0.' || (i % 250) || '.' || (i % 200), CASE WHEN unfinished THEN '40' "
               "ELSE '100' END, '300', CASE WHEN unfinished THEN '0' ELSE '1' END, s, "
               "'R_' || md5(i::VARCHAR)[:15], 'Last', 'First', lower(pid) || '@example.org', "
               "pid, '52.5', '13.4', 'email', 'EN', "
               + ", ".join(f"q{k}::VARCHAR" for k in range(4)) + " FROM r", body)

    def row(cells: list[str]) -> str:
        return ",".join('"' + c.replace('"', '""') + '"' for c in cells) + "\n"

    with open(folder / "qualtrics.csv", "w", encoding="utf-8") as out:
        out.write(row(meta + tags) + row(meta + [f"How much? - {t}" for t in tags]) + row(ids))
        with open(body, encoding="utf-8") as b:
            shutil.copyfileobj(b, out)
    body.unlink()
    (folder / "mapping.yaml").write_text(
        "format: qualtrics\nwave: pre\nexchange: E1\n"
        "items: {QID1_1: icc_1, QID1_2: icc_2, QID1_3: icc_3, QID1_4: icc_4}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--responses", type=int, default=1_000_000)
    args = ap.parse_args()
    os.environ.setdefault("EXCHANGE_IMPACT_KEY", "benchmark-pseudonymisation-key-0123456789")
    from etl.load import load_paths
    from etl.sources import load_mapping

    with tempfile.TemporaryDirectory(prefix="ei-qualtrics-bench-") as d:
        folder = Path(d)
        generate(folder, args.responses)
        roster = folder / "roster.duckdb"
        load_paths([folder / "roster"], roster)
        out = {"responses": args.responses}
        for name, path, kw in (
            ("contract_csv", folder / "responses.csv", {}),
            ("qualtrics", folder / "qualtrics.csv",
             {"mapping": load_mapping(folder / "mapping.yaml")}),
        ):
            wh = folder / name / "warehouse.duckdb"
            wh.parent.mkdir()
            shutil.copyfile(roster, wh)
            t0 = time.perf_counter()
            (rep,) = load_paths([path], wh, **kw)
            secs = time.perf_counter() - t0
            if rep.status != "loaded":
                raise SystemExit(f"{name}: the load did not go through: {rep.summary()}")
            out[name] = {"seconds": round(secs, 2), "rows": rep.rows_in,
                         "rows_per_s": round(args.responses / secs)}
        out["ratio_qualtrics_to_csv"] = round(
            out["qualtrics"]["rows_per_s"] / out["contract_csv"]["rows_per_s"], 2)
        out["target"] = ">= 0.5"
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
