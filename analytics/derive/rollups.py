"""Per-data-version rollups of the event log and survey answers that the dashboard reads instead of
scanning `events`, `responses` and `res_scale_scores` on a page view.

`build(con)` runs inside every load (from `analytics.derive.materialise.refresh`, on the writer's
connection of the next warehouse file), set-based in DuckDB, so each data version pays for its
rollups once and a page view aggregates a few thousand rows instead of millions.

Grain. Every rollup is keyed by the dimensions the filter bar can restrict: `exchange_id`
(program, exchange, cohort/term, modality and setting are attributes of the exchange),
`institution_id` (cluster and country are its attributes), `role` and `comparison`; the equity
cubes add `gender` and `birth_year` (the age band is derived at query time, because it depends
on today's date). Events, minutes, score sums and participant×exchange counts add up exactly
over any union of cells. Distinct-participant counts add up exactly only if each participant sits
in one cell, i.e. has events or answers in at most one exchange (their institution and role are
fixed): `build` records the number of participants who do not in meta `rollups_multi_exchange`,
and the read layer (`analytics.read.sql.use_rollups`) answers distinct counts from the day facts
when it is not 0.
Retention is defined per participant×exchange pair, so its rollup is exact either way.

A date-range filter cannot be answered by per-cell sums. Queries with one (and the fallbacks
above) read the day facts instead of the event log: `res_person_keys` gives every participant
an integer key for this data version, `res_person_days` holds events and minutes per
participant, exchange and UTC day, `res_answer_days` the days with answers per wave, and
`res_person_scores` / `res_person_gains` the scores and paired gains by that key, and
`res_person_hours` the events per local weekday and hour. A range of UTC days selects exactly
the events the range's timestamps would. The event log and the answers are read once, into
these facts; every rollup above is then built from them.
"""

from __future__ import annotations

import time

import duckdb

from etl import schema

__all__ = ["ROLLUP_TABLES", "build", "META_MULTI", "META_MONTHS_BASE", "MASK_MONTHS",
           "META_VERSION", "week_sql", "day_sql",
           "GENDER_SQL"]

META_MULTI = "rollups_multi_exchange"
META_MONTHS_BASE = "rule_months_base"
# Months a HUGEINT mask holds (bit 127 is the sign; one spare).
MASK_MONTHS = 126
META_VERSION = "rollups_data_version"

ROLLUP_TABLES: dict[str, schema.Table] = schema.ROLLUP_TABLES  # named once, in the schema

EV = schema.EVENTS.name
RESP = schema.RESPONSES.name
PEOPLE = schema.PARTICIPANTS.name
INST = schema.INSTITUTIONS.name
SCORES = schema.RES_SCALE_SCORES.name
KEYS = schema.RES_PERSON_KEYS.name
HOURS = schema.RES_PERSON_HOURS.name

def week_sql(ts: str) -> str:
    """Monday of the UTC week of timestamp column `ts`, by epoch arithmetic (1970-01-05 is a
    Monday): DuckDB's date_trunc on TIMESTAMPTZ goes through ICU time-zone rules per row and
    was 12× slower on the demo's events. The rollups and the read layer both use it, so
    weekly cells line up with the direct query's weeks."""
    return (f"(DATE '1970-01-05' + 7 * CAST(floor((epoch({ts}) - 345600) / 604800) "
            "AS INTEGER))")


def day_sql(ts: str) -> str:
    """The UTC date of timestamp column `ts`, by epoch arithmetic (a cast to DATE would go through
    the session's time zone per row)."""
    return f"(DATE '1970-01-01' + CAST(floor(epoch({ts}) / 86400) AS INTEGER))"


_DAY = day_sql("e.occurred_at")
_PEOPLE_DIMS = ("p.institution_id, p.role, coalesce(p.comparison, FALSE) AS comparison")
# A participant's gender as every grouping shows it (participants aliased p): the rollups,
# the read layer and `analytics.derive.materialise` all use this one expression.
GENDER_SQL = "coalesce(nullif(trim(p.gender), ''), 'not reported')"


def _sql(t: schema.Table, select: str) -> list[str]:
    cols = ", ".join(f'"{c}"' for c in t.column_names)
    return [f'DROP TABLE IF EXISTS "{t.name}"', schema.ddl(t),
            f'INSERT INTO "{t.name}" ({cols}) {select}']


def month_bit_sql(day: str, base: str) -> str:
    """The bit of the UTC month of date column `day` in a month mask whose bit 0 is the month of
    DATE `base` (a literal or column): a HUGEINT."""
    return (f"(CAST(1 AS HUGEINT) << CAST((year({day}) - year({base})) * 12 "
            f"+ month({day}) - month({base}) AS INTEGER))")


def _rule_months(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The differencing rule's month sets (`analytics.read.disclosure`): per pair, per week and
    cell, per retention week and cell, the months with events (and answers) as bit masks, so the
    rule judges a month range on a few thousand cube rows instead of grouping the day facts
    (at 1M participants the weekly rule took 6-14 s cold on 24M person-days). Bit 0 is the
    data's first month, recorded in meta; a span over MASK_MONTHS leaves the tables empty and
    the meta value '' (the rule then reads the day facts)."""
    pdays, adays = schema.RES_PERSON_DAYS.name, schema.RES_ANSWER_DAYS.name
    first, last = con.execute(f"""
        SELECT min(d), max(d) FROM (SELECT min(day) AS d FROM {pdays} UNION ALL
                                    SELECT max(day) FROM {pdays} UNION ALL
                                    SELECT min(day) FROM {adays} UNION ALL
                                    SELECT max(day) FROM {adays})""").fetchone()
    tables = (schema.RES_PAIR_MONTHS, schema.RES_PAIR_MONTH_CUBE, schema.RES_WEEK_MONTHS,
              schema.RES_RETENTION_MONTHS, schema.RES_SCORE_MONTHS,
              schema.RES_GAIN_MONTHS)
    empty = [s for t in tables for s in (f'DROP TABLE IF EXISTS "{t.name}"', schema.ddl(t))]
    meta = f"DELETE FROM {schema.META.name} WHERE key = '{META_MONTHS_BASE}'"
    span = (last.year - first.year) * 12 + last.month - first.month + 1 if first else 0
    if not first or span > MASK_MONTHS:
        return [*empty, meta, f"INSERT INTO {schema.META.name} VALUES ('{META_MONTHS_BASE}', '')"]
    base = f"DATE '{first.replace(day=1).isoformat()}'"
    bit = month_bit_sql("day", base)
    cell = "p.institution_id, p.role, coalesce(p.comparison, FALSE)"
    return [
        *_sql(schema.RES_PAIR_MONTHS, f"""
            SELECT pid, exchange_id, coalesce(a.m, 0), coalesce(r.m, 0)
            FROM (SELECT pid, exchange_id, bit_or({bit}) AS m FROM {pdays} GROUP BY ALL) a
            FULL JOIN (SELECT pid, exchange_id, bit_or({bit}) AS m FROM {adays} GROUP BY ALL) r
            USING (pid, exchange_id)"""),
        *_sql(schema.RES_PAIR_MONTH_CUBE, f"""
            SELECT m.exchange_id, {cell}, m.active_months, count(*)
            FROM {schema.RES_PAIR_MONTHS.name} m JOIN {KEYS} p USING (pid)
            WHERE m.active_months <> 0 GROUP BY ALL"""),
        *_sql(schema.RES_WEEK_MONTHS, f"""
            SELECT w.week, w.exchange_id, {cell}, w.m, count(*)
            FROM (SELECT pid, exchange_id, {week_sql("day")} AS week, bit_or({bit}) AS m
                  FROM {pdays} GROUP BY ALL) w JOIN {KEYS} p USING (pid) GROUP BY ALL"""),
        *_sql(schema.RES_RETENTION_MONTHS, f"""
            WITH firsts AS (SELECT pid, exchange_id, min(day) AS d0 FROM {pdays} GROUP BY ALL),
                 wk AS (SELECT d.pid, d.exchange_id, CAST((d.day - f.d0) // 7 AS INTEGER) AS week,
                               bit_or({month_bit_sql("d.day", base)}) AS m
                        FROM {pdays} d JOIN firsts f USING (pid, exchange_id) GROUP BY ALL)
            SELECT wk.exchange_id, {cell}, wk.week, wk.m, count(*)
            FROM wk JOIN {KEYS} p USING (pid) GROUP BY ALL"""),
        *_sql(schema.RES_SCORE_MONTHS, f"""
            SELECT s.exchange_id, {cell}, s.instrument, s.scale, s.wave,
                   m.active_months | m.answer_months, count(*)
            FROM {schema.RES_PERSON_SCORES.name} s JOIN {KEYS} p USING (pid)
            JOIN {schema.RES_PAIR_MONTHS.name} m USING (pid, exchange_id) GROUP BY ALL"""),
        *_sql(schema.RES_GAIN_MONTHS, f"""
            SELECT g.exchange_id, {cell}, g.instrument, g.scale,
                   m.active_months | m.answer_months, count(*)
            FROM {schema.RES_PERSON_GAINS.name} g JOIN {KEYS} p USING (pid)
            JOIN {schema.RES_PAIR_MONTHS.name} m USING (pid, exchange_id) GROUP BY ALL"""),
        meta,
        f"INSERT INTO {schema.META.name} VALUES ('{META_MONTHS_BASE}', '{first.replace(day=1)}')",
    ]


def build(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """(Re)build every rollup table in the warehouse behind `con`; returns seconds per table."""
    timings: dict[str, float] = {}
    have_scores = bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [SCORES]
    ).fetchone()[0])

    def run(name: str, stmts: list[str]) -> None:
        t0 = time.perf_counter()
        for s in stmts:
            con.execute(s)
        timings[name] = round(time.perf_counter() - t0, 3)

    # Day facts: what a date range reads. A dated view needs distinct participants over any span
    # of days, which no per-cell sum gives; these tables keep one row per participant, exchange
    # and UTC day (24M rows for the 1M demo's 47.5M events) keyed by a 4-byte integer instead
    # of the 12-character pseudonym. On the 1M demo a dated headline count took 0.64 s on the
    # events and answers and 0.09 s here.
    run(schema.RES_PERSON_KEYS.name, _sql(schema.RES_PERSON_KEYS, f"""
        SELECT CAST(row_number() OVER (ORDER BY participant_id) AS INTEGER), participant_id,
               institution_id, role, gender, birth_year, comparison
        FROM {PEOPLE}"""))
    # Local time of each event in its institution's zone. ICU's per-row conversion took 135 s
    # at 47M events, so the UTC offset is looked up instead: once per (zone, 15-minute UTC slot
    # that holds an event). Every offset and every DST switch in the tz database falls on a
    # multiple of 15 minutes, so the offset is constant within a slot; local weekday and hour
    # are then integer arithmetic on the event's epoch plus that offset. Only slots with events:
    # every slot from the first to the last event made one mistyped year (2125) into hundreds
    # of millions of rows.
    # The lookup is keyed by one integer (zone number × 2³² + slot): joined on the (zone name,
    # slot) pair it took 104 s at 47M events, on the integer 4 s.
    run(schema.RES_PERSON_HOURS.name, [
        "DROP TABLE IF EXISTS _rollup_zones",
        f"""CREATE TEMP TABLE _rollup_zones AS
            SELECT timezone, CAST(row_number() OVER (ORDER BY timezone) AS BIGINT) AS z
            FROM (SELECT DISTINCT timezone FROM {INST} WHERE timezone IS NOT NULL)""",
        "DROP TABLE IF EXISTS _rollup_offsets",
        f"""CREATE TEMP TABLE _rollup_offsets AS
            WITH s AS (SELECT DISTINCT CAST(floor(epoch(occurred_at) / 900) AS BIGINT) AS slot
                       FROM {EV})
            SELECT z.z * 4294967296 + s.slot AS k,
                   CAST(epoch(timezone(z.timezone, to_timestamp(s.slot * 900))) AS BIGINT)
                     - s.slot * 900 AS offset_s
            FROM _rollup_zones z, s""",
        "DROP TABLE IF EXISTS _rollup_pz",
        f"""CREATE TEMP TABLE _rollup_pz AS
            SELECT k.pid, k.participant_id, z.z
            FROM {KEYS} k LEFT JOIN {INST} i USING (institution_id)
            LEFT JOIN _rollup_zones z USING (timezone)""",
        # 1970-01-01 was a Thursday: ISO weekday ((days + 3) mod 7) + 1.
        *_sql(schema.RES_PERSON_HOURS, f"""
            WITH loc AS (
                SELECT pz.pid, e.exchange_id, {_DAY} AS day, e.minutes,
                       CAST(floor(epoch(e.occurred_at)) AS BIGINT) + o.offset_s AS t
                FROM {EV} e JOIN _rollup_pz pz USING (participant_id)
                LEFT JOIN _rollup_offsets o
                  ON o.k = pz.z * 4294967296 + CAST(floor(epoch(e.occurred_at) / 900) AS BIGINT))
            SELECT pid, exchange_id, day, CAST(((t // 86400 + 3) % 7) + 1 AS TINYINT),
                   CAST((t // 3600) % 24 AS TINYINT), count(*), sum(coalesce(minutes, 0))
            FROM loc GROUP BY ALL ORDER BY day"""),
        "DROP TABLE IF EXISTS _rollup_offsets",
        "DROP TABLE IF EXISTS _rollup_pz",
        "DROP TABLE IF EXISTS _rollup_zones",
    ])
    run(schema.RES_PERSON_DAYS.name, _sql(schema.RES_PERSON_DAYS, f"""
        SELECT pid, exchange_id, day, sum(events), sum(minutes) FROM {HOURS}
        GROUP BY ALL ORDER BY day"""))
    run(schema.RES_ANSWER_DAYS.name, _sql(schema.RES_ANSWER_DAYS, f"""
        SELECT DISTINCT k.pid, r.exchange_id, r.wave, {day_sql("r.submitted_at")} AS day
        FROM {RESP} r JOIN {KEYS} k USING (participant_id)
        ORDER BY day"""))

    # The exchange each participant took part in (events or answers): one row per pair.
    run("participant_exchanges", [
        "DROP TABLE IF EXISTS _rollup_px",
        f"""CREATE TEMP TABLE _rollup_px AS
            SELECT DISTINCT pid, exchange_id FROM {schema.RES_PERSON_DAYS.name}
            UNION SELECT DISTINCT pid, exchange_id FROM {schema.RES_ANSWER_DAYS.name}""",
    ])
    multi = con.execute(
        "SELECT count(*) FROM (SELECT pid FROM _rollup_px GROUP BY 1 "
        "HAVING count(*) > 1)").fetchone()[0]

    # Weeks and months from the day facts (a UTC day lies in one UTC week and month): half the
    # rows of the event log, and the same sums and distinct counts.
    days = f"""{schema.RES_PERSON_DAYS.name} d JOIN {KEYS} p USING (pid)"""
    run(schema.RES_ACTIVITY_WEEKLY.name, _sql(schema.RES_ACTIVITY_WEEKLY, f"""
        SELECT {week_sql("d.day")} AS week, d.exchange_id, {_PEOPLE_DIMS},
               count(DISTINCT d.pid), sum(d.events), sum(d.minutes)
        FROM {days} GROUP BY ALL"""))
    run(schema.RES_ACTIVITY_MONTHLY.name, _sql(schema.RES_ACTIVITY_MONTHLY, f"""
        SELECT CAST(date_trunc('month', d.day) AS DATE) AS month, d.exchange_id,
               {_PEOPLE_DIMS}, count(DISTINCT d.pid), sum(d.events), sum(d.minutes)
        FROM {days} GROUP BY ALL"""))
    run(schema.RES_ACTIVITY_HOURLY.name, _sql(schema.RES_ACTIVITY_HOURLY, f"""
        SELECT h.exchange_id, {_PEOPLE_DIMS}, h.weekday, h.hour, sum(h.events),
               count(DISTINCT h.pid)
        FROM {HOURS} h JOIN {KEYS} p USING (pid) GROUP BY ALL"""))
    # Weeks since the pair's first active day (days since // 7): the direct query's definition,
    # per participant×exchange.
    run(schema.RES_RETENTION.name, _sql(schema.RES_RETENTION, f"""
        WITH firsts AS (SELECT pid, exchange_id, min(day) AS d0 FROM {schema.RES_PERSON_DAYS.name}
                        GROUP BY ALL),
             wk AS (SELECT DISTINCT d.pid, d.exchange_id,
                           CAST((d.day - f.d0) // 7 AS INTEGER) AS week
                    FROM {schema.RES_PERSON_DAYS.name} d JOIN firsts f USING (pid, exchange_id))
        SELECT wk.exchange_id, {_PEOPLE_DIMS}, wk.week, count(*)
        FROM wk JOIN {KEYS} p USING (pid) GROUP BY ALL"""))
    # One row per (cell, gender, birth year): people, those active, their events and minutes, and
    # survey stages. exchange_id is the participant's one exchange (NULL: none yet); with
    # multi-exchange participants it is their first by id and meta says the cube is not exact.
    run(schema.RES_PEOPLE.name, _sql(schema.RES_PEOPLE, f"""
        WITH px AS (SELECT pid, min(exchange_id) AS exchange_id FROM _rollup_px GROUP BY 1),
             act AS (SELECT pid, sum(events) AS events, sum(minutes) AS minutes
                     FROM {schema.RES_PERSON_DAYS.name} GROUP BY 1),
             w AS (SELECT pid, bool_or(wave = 'pre') AS pre, bool_or(wave = 'post') AS post
                   FROM {schema.RES_ANSWER_DAYS.name} GROUP BY 1)
        SELECT px.exchange_id, {_PEOPLE_DIMS}, {GENDER_SQL} AS gender, p.birth_year,
               count(*), count(act.pid), coalesce(sum(act.events), 0),
               coalesce(sum(act.minutes), 0), count(*) FILTER (WHERE w.pre),
               count(*) FILTER (WHERE w.pre AND NOT w.post)
        FROM {KEYS} p LEFT JOIN px USING (pid) LEFT JOIN act USING (pid)
             LEFT JOIN w USING (pid)
        GROUP BY ALL"""))
    run(schema.RES_RESPONSE_WAVES.name, _sql(schema.RES_RESPONSE_WAVES, f"""
        SELECT a.exchange_id, {_PEOPLE_DIMS}, {GENDER_SQL} AS gender, p.birth_year, a.wave,
               count(DISTINCT a.pid)
        FROM {schema.RES_ANSWER_DAYS.name} a JOIN {KEYS} p USING (pid) GROUP BY ALL"""))
    if have_scores:
        # Scores and paired gains keyed by pid, then the cubes from them: a self-join of the
        # scores on the pseudonym took 4.8 s at 1M participants; the cubes' sums are the same.
        run(schema.RES_PERSON_SCORES.name, _sql(schema.RES_PERSON_SCORES, f"""
            SELECT k.pid, s.exchange_id, s.instrument, s.scale, s.wave, s.score
            FROM {SCORES} s JOIN {KEYS} k ON k.participant_id = s.participant
            WHERE s.score IS NOT NULL"""))
        run(schema.RES_PERSON_GAINS.name, _sql(schema.RES_PERSON_GAINS, f"""
            SELECT pid, exchange_id, instrument, scale, post - pre, pre, post FROM (
                SELECT pid, exchange_id, instrument, scale,
                       max(score) FILTER (WHERE wave = 'pre') AS pre,
                       max(score) FILTER (WHERE wave = 'post') AS post
                FROM {schema.RES_PERSON_SCORES.name} WHERE wave IN ('pre', 'post') GROUP BY ALL)
            WHERE pre IS NOT NULL AND post IS NOT NULL"""))
        run(schema.RES_SCORE_CUBE.name, _sql(schema.RES_SCORE_CUBE, f"""
            SELECT s.exchange_id, {_PEOPLE_DIMS}, s.instrument, s.scale, s.wave,
                   count(*), sum(s.score), sum(s.score * s.score)
            FROM {schema.RES_PERSON_SCORES.name} s JOIN {KEYS} p USING (pid) GROUP BY ALL"""))
        run(schema.RES_GAIN_CUBE.name, _sql(schema.RES_GAIN_CUBE, f"""
            SELECT g.exchange_id, {_PEOPLE_DIMS}, {GENDER_SQL} AS gender, p.birth_year,
                   g.instrument, g.scale, count(*), sum(g.gain), sum(g.gain * g.gain)
            FROM {schema.RES_PERSON_GAINS.name} g JOIN {KEYS} p USING (pid) GROUP BY ALL"""))
    else:
        for t in (schema.RES_PERSON_SCORES, schema.RES_PERSON_GAINS, schema.RES_SCORE_CUBE,
                  schema.RES_GAIN_CUBE):
            con.execute(f'DROP TABLE IF EXISTS "{t.name}"')
            con.execute(schema.ddl(t))
    run("rule_months", _rule_months(con))
    con.execute("DROP TABLE IF EXISTS _rollup_px")
    version = con.execute(
        f"SELECT value FROM {schema.META.name} WHERE key = 'data_version'").fetchone()
    con.execute(f"DELETE FROM {schema.META.name} WHERE key IN (?, ?)", [META_MULTI, META_VERSION])
    con.executemany(f"INSERT INTO {schema.META.name} VALUES (?, ?)",
                    [[META_MULTI, str(int(multi))],
                     [META_VERSION, version[0] if version else "0"]])
    return timings
