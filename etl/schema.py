"""Table and column names of the warehouse, and its DDL: the one place they are spelled.

`etl` writes these tables, `analytics` and `pages` read them; all three import the names from
here so that a rename is one edit. Column order in each `Table.columns` is the order in the
warehouse and in exports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Column",
    "Table",
    "TABLES",
    "CONTRACT_KINDS",
    "LOAD_ORDER",
    "CLUSTERS",
    "INSTITUTIONS",
    "EXCHANGES",
    "PARTNERSHIPS",
    "PARTICIPANTS",
    "EVENTS",
    "RESPONSES",
    "RATES",
    "LOAD_BATCHES",
    "REJECTS",
    "META",
    "META_EVENTS_IN_LAKE",
    "ddl",
    "IDENTIFYING_COLUMNS",
    "RES_ACTIVITY_WEEKLY",
    "RES_ACTIVITY_MONTHLY",
    "RES_ACTIVITY_HOURLY",
    "RES_RETENTION",
    "RES_PEOPLE",
    "RES_RESPONSE_WAVES",
    "RES_SCORE_CUBE",
    "RES_GAIN_CUBE",
    "ROLLUP_TABLES",
    "RESULT_EXPORTS",
]


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    required: bool = False  # required in the input contract
    doc: str = ""
    storage: str = ""  # DDL after the type, e.g. a compression choice


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # natural key: a corrected file replaces rows by it
    doc: str = ""
    references: dict[str, tuple[str, str]] = field(default_factory=dict)  # col -> (table, col)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def col(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


# Pseudonyms are random strings: DuckDB's string compression spends about a third of a second
# per million rows analysing them and saves little, so the two big tables store them as they are.
UNCOMPRESSED = "USING COMPRESSION uncompressed"

BATCH_ID = Column("batch_id", "INTEGER", doc="load batch that contributed the row")

CLUSTERS = Table(
    "clusters",
    (
        Column("cluster_id", "VARCHAR", True, "cluster or network identifier"),
        Column("name", "VARCHAR", True, "display name"),
        Column("kind", "VARCHAR", True, "cluster | network | consortium"),
        BATCH_ID,
    ),
    key=("cluster_id",),
    doc="Education clusters, networks and consortia that run exchanges.",
)

INSTITUTIONS = Table(
    "institutions",
    (
        Column("institution_id", "VARCHAR", True, "institution identifier"),
        Column("name", "VARCHAR", True, "display name"),
        Column("country", "VARCHAR", True, "ISO 3166-1 alpha-3"),
        Column("cluster_id", "VARCHAR", True, "cluster the institution belongs to"),
        Column("timezone", "VARCHAR", True, "IANA time zone; naive times are read in it"),
        Column("kind", "VARCHAR", True, "school | university | other"),
        Column("city", "VARCHAR", doc="city (e-mails, phones and IPs masked)"),
        Column("income_group", "VARCHAR",
               doc="World Bank income group: low | lower-middle | upper-middle | high"),
        Column("connectivity", "VARCHAR", doc="low | medium | high"),
        BATCH_ID,
    ),
    key=("institution_id",),
    doc="Schools and universities taking part.",
    references={"cluster_id": ("clusters", "cluster_id")},
)

EXCHANGES = Table(
    "exchanges",
    (
        Column("exchange_id", "VARCHAR", True, "exchange identifier"),
        Column("name", "VARCHAR", True, "display name"),
        Column("program", "VARCHAR", True, "funding or umbrella program"),
        Column("cluster_id", "VARCHAR", True, "cluster running the exchange"),
        Column("modality", "VARCHAR", True, "virtual | blended | physical"),
        Column("setting", "VARCHAR", True, "curricular | extracurricular"),
        Column("purpose", "VARCHAR", True, "e.g. language practice, joint science project"),
        Column("language", "VARCHAR", True, "working language"),
        Column("start_date", "DATE", True, "first day"),
        Column("end_date", "DATE", True, "last day"),
        Column("budget", "DOUBLE", doc="total budget in `currency`"),
        Column("currency", "VARCHAR", doc="ISO 4217 code"),
        BATCH_ID,
    ),
    key=("exchange_id",),
    doc="Exchanges: virtual exchanges, COIL/mirror classes, blended and physical mobility.",
    references={"cluster_id": ("clusters", "cluster_id")},
)

PARTNERSHIPS = Table(
    "partnerships",
    (
        Column("partnership_id", "VARCHAR", True, "partnership identifier"),
        Column("exchange_id", "VARCHAR", True, "exchange the partnership belongs to"),
        Column("institution_a", "VARCHAR", True, "one partner"),
        Column("institution_b", "VARCHAR", True, "the other partner"),
        Column("started_on", "DATE", True, "first day of the partnership"),
        Column("ended_on", "DATE", doc="last day; empty = still active (censored)"),
        BATCH_ID,
    ),
    key=("partnership_id",),
    doc="Institution-to-institution links within an exchange, as durations with censoring.",
    references={
        "exchange_id": ("exchanges", "exchange_id"),
        "institution_a": ("institutions", "institution_id"),
        "institution_b": ("institutions", "institution_id"),
    },
)

PARTICIPANTS = Table(
    "participants",
    (
        Column("participant_id", "VARCHAR", True,
               "keyed-hash pseudonym (HMAC-SHA256) of the source id"),
        Column("institution_id", "VARCHAR", True, "home institution"),
        Column("role", "VARCHAR", True, "student | teacher"),
        Column("gender", "VARCHAR", doc="female | male | non-binary | another | not reported "
                                        "(spellings mapped; empty = not reported)"),
        Column("birth_year", "INTEGER", doc="year of birth"),
        Column("comparison", "BOOLEAN", doc="true for a non-participating comparison group"),
        BATCH_ID,
    ),
    key=("participant_id",),
    doc="Students and teachers; identifiers are pseudonymised on the way in.",
    references={"institution_id": ("institutions", "institution_id")},
)

EVENTS = Table(
    "events",
    (
        Column("participant_id", "VARCHAR", True, "pseudonym", UNCOMPRESSED),
        Column("exchange_id", "VARCHAR", True, "exchange"),
        Column("occurred_at", "TIMESTAMPTZ", True,
               "UTC instant; naive input read in the institution's zone"),
        Column("activity", "VARCHAR", True, "what was done (message, video call, upload, ...); "
               "e-mails, phone numbers and IP addresses masked"),
        Column("minutes", "DOUBLE", doc="duration in minutes"),
        BATCH_ID,
    ),
    key=("participant_id", "exchange_id", "occurred_at", "activity"),
    doc="Participation log.",
    references={
        "participant_id": ("participants", "participant_id"),
        "exchange_id": ("exchanges", "exchange_id"),
    },
)

RESPONSES = Table(
    "responses",
    (
        Column("participant_id", "VARCHAR", True, "pseudonym", UNCOMPRESSED),
        Column("exchange_id", "VARCHAR", True, "exchange"),
        Column("wave", "VARCHAR", True, "pre | post | followup | followup_6m ..."),
        Column("instrument", "VARCHAR", doc="instrument id from surveys/ (derived from the item)"),
        Column("item", "VARCHAR", True, "item id"),
        Column("value", "DOUBLE",
               doc="answer on the instrument's scale, as given (not reverse-coded)"),
        Column("submitted_at", "TIMESTAMPTZ", True, "UTC instant"),
        BATCH_ID,
        # After batch_id: a warehouse built before it gets the column appended (ALTER TABLE),
        # so new and upgraded files have the same column order.
        Column("language", "VARCHAR",
               doc="ISO 639-1 code of the language the survey was taken in (optional in the "
                   "contract: code, ISO 639-2 code or name such as Spanish or español; empty = "
                   "the exchange's language; see etl/languages.py)"),
    ),
    key=("participant_id", "exchange_id", "wave", "item"),
    doc="Survey answers in long form: one row per participant, exchange, wave and item.",
    references={
        "participant_id": ("participants", "participant_id"),
        "exchange_id": ("exchanges", "exchange_id"),
    },
)

# Issue 13 (cost per outcome): exchange rates, so budgets in several currencies can be added up.
# One row per currency and year; `base` says what the rate is against (units of `currency` per
# one `base`), so a table never converts silently into a currency nobody named.
RATES = Table(
    "rates",
    (
        Column("currency", "VARCHAR", True, "ISO 4217 code of the currency the rate is for"),
        Column("year", "INTEGER", True, "calendar year the rate applies to; an exchange's budget "
                                        "is converted at the rate of its start_date's year"),
        Column("rate", "DOUBLE", True, "units of `currency` per one unit of `base` (> 0), "
                                       "e.g. 1.08 for USD against EUR"),
        Column("base", "VARCHAR", True, "ISO 4217 code of the reporting currency the rate is "
                                        "against; a row of the base itself has rate 1"),
        BATCH_ID,
    ),
    key=("currency", "year"),
    doc="Exchange rates per currency and year against a stated base (reporting) currency.",
)

LOAD_BATCHES = Table(
    "load_batches",
    (
        Column("batch_id", "INTEGER", doc="batch number"),
        Column("file", "VARCHAR", doc="path as given"),
        Column("source_name", "VARCHAR", doc="file name, for display"),
        Column("sha256", "VARCHAR",
               doc="SHA-256 content hash of batches loaded before the blake3 column existed "
                   "(kept so that their files are still recognised as already loaded)"),
        Column("kind", "VARCHAR", doc="contract table the file was loaded into"),
        Column("rows_in", "BIGINT", doc="data rows read"),
        Column("rows_accepted", "BIGINT", doc="rows loaded"),
        Column("rows_rejected", "BIGINT", doc="rows written to rejects"),
        Column("rows_replaced", "BIGINT", doc="rows of earlier loads this one took the place of"),
        Column("started_at", "TIMESTAMPTZ", doc="start"),
        Column("finished_at", "TIMESTAMPTZ", doc="end"),
        Column("status", "VARCHAR", doc="loaded | refused"),
        Column("message", "VARCHAR", doc="notes: ignored columns, dropped identifying columns"),
        Column("data_version", "INTEGER", doc="data version this batch produced"),
        Column("source", "VARCHAR", doc="the source the rows belong to: the file's absolute path, "
                                        "or the name given with --source"),
        Column("rows_added", "BIGINT", doc="rows (answers for responses) with a new natural key"),
        Column("rows_changed", "BIGINT", doc="rows that replaced one with the same key and "
                                             "other values"),
        Column("rows_removed", "BIGINT", doc="rows of the source's earlier loads that --replace "
                                             "removed"),
        Column("rows_unchanged", "BIGINT", doc="rows identical to one already there"),
        # Appended: a warehouse built before it gets it by ALTER TABLE (create_schema).
        Column("blake3", "VARCHAR",
               doc="content hash (BLAKE3 of the file; for an export, of the file with its "
                   "mapping and --wave/--exchange): the same content is never loaded twice"),
    ),
    doc="One row per file loaded.",
)

REJECTS = Table(
    "rejects",
    (
        Column("batch_id", "INTEGER", doc="batch"),
        Column("file", "VARCHAR", doc="path as given"),
        Column("row_number", "BIGINT", doc="row in the file, header = row 1 (line for CSV)"),
        Column("column_name", "VARCHAR", doc="offending column"),
        Column("rule", "VARCHAR", doc="rule broken, e.g. range, reference, date"),
        Column("value", "VARCHAR", doc="offending value: pseudonym for participant ids, e-mails, "
               "phones and IPs masked, a person's coded attributes [withheld]"),
        Column("message", "VARCHAR", doc="readable explanation (quotes the value as masked)"),
    ),
    doc="Rows refused by validation, with the rule each broke.",
)

META = Table(
    "meta",
    (
        Column("key", "VARCHAR", doc="setting"),
        Column("value", "VARCHAR", doc="value"),
    ),
    doc="data_version, built_at, build_id and key_fingerprint (a one-way digest of the "
        "pseudonymisation key, never the key) of the warehouse file; events_in_lake on a "
        "serving warehouse built from a lake.",
)

# The meta row of a serving warehouse built from a lake (`analytics.derive.serve`): its `events`
# table is empty by design, the event log stays in the lake. The value: {"lake": absolute path,
# "version": the lake's version}, as JSON. Whatever would read `events` refuses on it.
META_EVENTS_IN_LAKE = "events_in_lake"

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        CLUSTERS, INSTITUTIONS, EXCHANGES, PARTNERSHIPS, PARTICIPANTS, EVENTS, RESPONSES,
        LOAD_BATCHES, REJECTS, META, RATES,
    )
}

# The kinds a user can load, in dependency order (a folder loads in this order).
LOAD_ORDER: tuple[str, ...] = (
    "clusters", "institutions", "exchanges", "partnerships", "participants", "events", "responses",
    "rates",  # depends on nothing; last, so the kinds above keep their order
)
CONTRACT_KINDS = frozenset(LOAD_ORDER)

# Source columns that identify a person. They never reach the warehouse in clear.
IDENTIFYING_COLUMNS = frozenset(
    {"name", "full_name", "first_name", "last_name", "email", "e_mail", "e-mail", "mail",
     "user_full_name", "user", "username"}
)


def ddl(table: Table) -> str:
    cols = ",\n  ".join(f'"{c.name}" {c.sql_type} {c.storage}'.rstrip() for c in table.columns)
    return f'CREATE TABLE IF NOT EXISTS "{table.name}" (\n  {cols}\n)'


# ---------------------------------------------------------------------------------------------
# Result tables: computed by `analytics` once per data version, stored in the warehouse by the
# writer, read by pages and exports. Their columns are the researcher-facing interface.
# ---------------------------------------------------------------------------------------------

def _cols(spec: str) -> tuple[Column, ...]:
    out = []
    for part in spec.split(","):
        name, typ = part.split(":")
        out.append(Column(name.strip(), typ.strip()))
    return tuple(out)


RES_SCALE_SCORES = Table(
    "res_scale_scores",
    _cols("participant:VARCHAR, exchange_id:VARCHAR, wave:VARCHAR, instrument:VARCHAR, "
          "scale:VARCHAR, score:DOUBLE, n_items_answered:INTEGER"),
    doc="Scale score per participant, exchange, wave and scale "
        "(mean of answered items after reverse coding).",
)
RES_RELIABILITY = Table(
    "res_reliability",
    _cols("instrument:VARCHAR, scale:VARCHAR, wave:VARCHAR, n:INTEGER, n_items:INTEGER, "
          "alpha:DOUBLE, alpha_ci_low:DOUBLE, alpha_ci_high:DOUBLE, below_threshold:BOOLEAN"),
    doc="Cronbach's alpha per instrument, scale and wave.",
)
RES_PREPOST = Table(
    "res_prepost",
    _cols("instrument:VARCHAR, scale:VARCHAR, group_by:VARCHAR, group:VARCHAR, n:INTEGER, "
          "mean_pre:DOUBLE, mean_post:DOUBLE, diff:DOUBLE, diff_ci_low:DOUBLE, "
          "diff_ci_high:DOUBLE, "
          "t:DOUBLE, dof:DOUBLE, p:DOUBLE, p_fdr:DOUBLE, wilcoxon_p:DOUBLE, d_z:DOUBLE, "
          "d_av:DOUBLE, "
          "hedges_g:DOUBLE, hedges_g_ci_low:DOUBLE, hedges_g_ci_high:DOUBLE, suppressed:VARCHAR, "
          "p_fdr_table:DOUBLE, n_clusters:INTEGER, diff_se_cr2:DOUBLE, diff_df_cr2:DOUBLE, "
          "diff_ci_low_cr2:DOUBLE, diff_ci_high_cr2:DOUBLE, p_cr2:DOUBLE, few_clusters:BOOLEAN, "
          "hedges_g_ci_low_cr2:DOUBLE, hedges_g_ci_high_cr2:DOUBLE"),
    doc="Paired pre/post change per scale, overall and by group.",
)
RES_LONGITUDINAL = Table(
    "res_longitudinal",
    _cols("instrument:VARCHAR, scale:VARCHAR, term:VARCHAR, estimate:DOUBLE, se:DOUBLE, "
          "ci_low:DOUBLE, ci_high:DOUBLE, p:DOUBLE, n_participants:INTEGER, n_obs:INTEGER, "
          "converged:BOOLEAN, suppressed:VARCHAR"),
    doc="Random-intercept mixed model per scale: fixed effects, marginal means, contrasts, "
        "variance shares.",
)
RES_ATTRITION = Table(
    "res_attrition",
    _cols("group_by:VARCHAR, group:VARCHAR, wave:VARCHAR, n_invited:INTEGER, n_responded:INTEGER, "
          "rate:DOUBLE, suppressed:VARCHAR"),
    doc="Survey response funnel per wave, overall and by group.",
)

RES_ATTRITION_BASELINE = Table(
    "res_attrition_baseline",
    _cols("instrument:VARCHAR, scale:VARCHAR, measure:VARCHAR, n_completers:INTEGER, "
          "n_dropouts:INTEGER, mean_completers:DOUBLE, mean_dropouts:DOUBLE, diff:DOUBLE, "
          "diff_ci_low:DOUBLE, diff_ci_high:DOUBLE, t:DOUBLE, dof:DOUBLE, p:DOUBLE, "
          "suppressed:VARCHAR"),
    doc="Did those who dropped out before the post survey differ at baseline? Completers vs "
        "non-completers on the pre score per scale and on engagement (Welch t).",
)

RES_SENSITIVITY = Table(
    "res_sensitivity",
    _cols("instrument:VARCHAR, scale:VARCHAR, wave:VARCHAR, method:VARCHAR, delta:DOUBLE, "
          "estimate:DOUBLE, se:DOUBLE, dof:DOUBLE, ci_low:DOUBLE, ci_high:DOUBLE, n:INTEGER, "
          "n_responded:INTEGER, n_clusters:INTEGER, few_clusters:BOOLEAN, suppressed:VARCHAR"),
    doc="How far does dropout move the gain? Mean change from pre per scale and later wave for "
        "exchange participants with a pre score: completers only, inverse-probability weighted "
        "(MAR given engagement and pre score), delta-adjusted (MNAR) and the tipping point.",
)
RES_RELIABILITY_GROUPS = Table(
    "res_reliability_groups",
    _cols("instrument:VARCHAR, scale:VARCHAR, wave:VARCHAR, group_by:VARCHAR, group:VARCHAR, "
          "n:INTEGER, n_items:INTEGER, alpha:DOUBLE, alpha_ci_low:DOUBLE, alpha_ci_high:DOUBLE, "
          "omega:DOUBLE, below_threshold:BOOLEAN, small_n:BOOLEAN, suppressed:VARCHAR"),
    doc="Cronbach's alpha (Feldt CI) and McDonald's omega (one-factor ML model) per scale and "
        "wave, overall and per language the survey was taken in and per country.",
)
RES_FLOOR_CEILING = Table(
    "res_floor_ceiling",
    _cols("instrument:VARCHAR, scale:VARCHAR, wave:VARCHAR, n:INTEGER, scale_min:DOUBLE, "
          "scale_max:DOUBLE, n_floor:INTEGER, n_ceiling:INTEGER, floor_share:DOUBLE, "
          "ceiling_share:DOUBLE, floor_effect:BOOLEAN, ceiling_effect:BOOLEAN, "
          "suppressed:VARCHAR"),
    doc="Share of scored respondents at the scale's minimum and maximum per scale and wave, "
        "flagged above 15% (Terwee et al. 2007).",
)
RES_INVARIANCE = Table(
    "res_invariance",
    _cols("instrument:VARCHAR, scale:VARCHAR, wave:VARCHAR, item:VARCHAR, language:VARCHAR, "
          "reference:VARCHAR, n_language:INTEGER, n_reference:INTEGER, shift:DOUBLE, "
          "delta_r2:DOUBLE, f:DOUBLE, p:DOUBLE, p_holm:DOUBLE, differs:BOOLEAN, verdict:VARCHAR"),
    doc="Measurement invariance across languages per scale: regression DIF screen of each item "
        "against the reference language at the pre wave, with a plain verdict per scale.",
)

RESULT_TABLES: dict[str, Table] = {
    t.name: t for t in (RES_SCALE_SCORES, RES_RELIABILITY, RES_PREPOST, RES_LONGITUDINAL,
                        RES_ATTRITION, RES_ATTRITION_BASELINE)
}
RESULT_TABLES[RES_SENSITIVITY.name] = RES_SENSITIVITY
# Measurement checks (issue 10 §4), appended so the tables above keep their order.
RESULT_TABLES.update({t.name: t for t in (RES_RELIABILITY_GROUPS, RES_FLOOR_CEILING,
                                          RES_INVARIANCE)})

# The researcher-facing name of each result table (`python -m analytics export TABLE`), in the
# order the tables are computed and exported.
RESULT_EXPORTS: dict[str, Table] = {
    t.name.removeprefix("res_"): t
    for t in (RES_SCALE_SCORES, RES_RELIABILITY, RES_PREPOST, RES_LONGITUDINAL, RES_ATTRITION,
              RES_ATTRITION_BASELINE)
}
RESULT_EXPORTS[RES_SENSITIVITY.name.removeprefix("res_")] = RES_SENSITIVITY
RESULT_EXPORTS.update({t.name.removeprefix("res_"): t for t in (
    RES_RELIABILITY_GROUPS, RES_FLOOR_CEILING, RES_INVARIANCE)})

# ---------------------------------------------------------------------------------------------
# Dashboard rollups: written by `analytics.derive.rollups.build` in every load (from
# `analytics.derive.materialise.refresh`), read by `analytics.read`. Keyed by the dimensions the
# filter bar restricts (exchange → program/term/modality/setting; institution → cluster/country;
# role; comparison group); see analytics/derive/rollups.py for when their distinct counts are exact.
# ---------------------------------------------------------------------------------------------

_CELL = "exchange_id:VARCHAR, institution_id:VARCHAR, role:VARCHAR, comparison:BOOLEAN"

RES_ACTIVITY_WEEKLY = Table(
    "res_activity_weekly",
    _cols("week:DATE, " + _CELL + ", active:BIGINT, events:BIGINT, minutes:DOUBLE"),
    doc="Events, minutes and distinct active participants per UTC week (Monday) and cell.",
)
RES_ACTIVITY_MONTHLY = Table(
    "res_activity_monthly",
    _cols("month:DATE, " + _CELL + ", active:BIGINT, events:BIGINT, minutes:DOUBLE"),
    doc="Events, minutes and distinct active participants per UTC calendar month and cell.",
)
RES_ACTIVITY_HOURLY = Table(
    "res_activity_hourly",
    _cols(_CELL + ", weekday:INTEGER, hour:INTEGER, events:BIGINT, n:BIGINT"),
    doc="Events and distinct participants per local ISO weekday × hour (institution's time "
        "zone) and cell.",
)
RES_RETENTION = Table(
    "res_retention",
    _cols(_CELL + ", week:INTEGER, active:BIGINT"),
    doc="Participant×exchange pairs active in week k after the pair's first active UTC day "
        "(k = days since // 7), per cell (week 0 counts every pair with events).",
)
RES_PEOPLE = Table(
    "res_people",
    _cols(_CELL + ", gender:VARCHAR, birth_year:INTEGER, n:BIGINT, active:BIGINT, "
          "events:BIGINT, minutes:DOUBLE, answered_pre:BIGINT, pre_not_post:BIGINT"),
    doc="Participants per cell, gender and birth year (exchange_id NULL: no events or answers): "
        "how many were active, their events and minutes, and their pre/post survey stages.",
)
RES_RESPONSE_WAVES = Table(
    "res_response_waves",
    _cols(_CELL + ", gender:VARCHAR, birth_year:INTEGER, wave:VARCHAR, responded:BIGINT"),
    doc="Distinct participants with any answer per wave, cell, gender and birth year.",
)
RES_SCORE_CUBE = Table(
    "res_score_cube",
    _cols(_CELL + ", instrument:VARCHAR, scale:VARCHAR, wave:VARCHAR, n:BIGINT, "
          "sum:DOUBLE, sumsq:DOUBLE"),
    doc="Scale scores per cell and wave as count, sum and sum of squares (means and SDs add up).",
)
RES_GAIN_CUBE = Table(
    "res_gain_cube",
    _cols(_CELL + ", gender:VARCHAR, birth_year:INTEGER, instrument:VARCHAR, scale:VARCHAR, "
          "n:BIGINT, sum:DOUBLE, sumsq:DOUBLE"),
    doc="Paired post − pre score gains per cell, gender and birth year as count, sum and sum of "
        "squares.",
)

RES_PERSON_KEYS = Table(
    "res_person_keys",
    _cols("pid:INTEGER, participant_id:VARCHAR, institution_id:VARCHAR, role:VARCHAR, "
          "gender:VARCHAR, birth_year:INTEGER, comparison:BOOLEAN"),
    doc="Every participant with an integer key for this data version (pid, not stable across "
        "versions) and the attributes the filters and groupings read.",
)
RES_PERSON_DAYS = Table(
    "res_person_days",
    _cols("pid:INTEGER, exchange_id:VARCHAR, day:DATE, events:BIGINT, minutes:DOUBLE"),
    doc="Events and minutes per participant (pid), exchange and UTC day: what a date range "
        "reads instead of the event log.",
)
RES_ANSWER_DAYS = Table(
    "res_answer_days",
    _cols("pid:INTEGER, exchange_id:VARCHAR, wave:VARCHAR, day:DATE"),
    doc="The UTC days on which a participant (pid) submitted answers for an exchange's wave.",
)

RES_PERSON_SCORES = Table(
    "res_person_scores",
    _cols("pid:INTEGER, exchange_id:VARCHAR, instrument:VARCHAR, scale:VARCHAR, wave:VARCHAR, "
          "score:DOUBLE"),
    doc="res_scale_scores' scored rows keyed by pid: what dated views and fallbacks read.",
)
RES_PERSON_GAINS = Table(
    "res_person_gains",
    _cols("pid:INTEGER, exchange_id:VARCHAR, instrument:VARCHAR, scale:VARCHAR, gain:DOUBLE, "
          "pre:DOUBLE, post:DOUBLE"),
    doc="The complete pre/post pairs: pre and post score and their gain (post − pre) per "
        "participant (pid), exchange and scale; the on-request pre/post table reads them "
        "instead of pivoting res_person_scores (issue 17).",
)

RES_PERSON_HOURS = Table(
    "res_person_hours",
    _cols("pid:INTEGER, exchange_id:VARCHAR, day:DATE, weekday:TINYINT, hour:TINYINT, "
          "events:BIGINT, minutes:DOUBLE"),
    doc="Events and minutes per participant (pid), exchange, UTC day and local ISO weekday × "
        "hour (in the institution's time zone): what a dated heatmap reads.",
)
RES_PERSON_ACTIVITIES = Table(
    "res_person_activities",
    _cols("pid:INTEGER, exchange_id:VARCHAR, day:DATE, activity:VARCHAR, events:BIGINT, "
          "minutes:DOUBLE"),
    doc="Events and minutes per participant (pid), exchange, UTC day and activity: what the "
        "result tables read instead of the event log (issue 16/17). pid is NULL for events of a "
        "participant no longer in participants (a roster replaced without them), kept so that "
        "every day of the log is here.",
)

# The differencing rule's months (issue 14, fast at 1M: issue 17). A month set is a HUGEINT bit
# mask: bit i is the i-th UTC calendar month from meta `rule_months_base` (the data's first
# month); a program longer than 126 months gets empty tables and the rule reads the day facts.
RES_PAIR_MONTHS = Table(
    "res_pair_months",
    _cols("pid:INTEGER, exchange_id:VARCHAR, active_months:HUGEINT, answer_months:HUGEINT"),
    doc="Per participant (pid) and exchange with events or answers: the months with events and "
        "the months with answers, as bit masks (meta rule_months_base is bit 0).",
)
RES_PAIR_MONTH_CUBE = Table(
    "res_pair_month_cube",
    _cols(_CELL + ", months:HUGEINT, pairs:BIGINT"),
    doc="Participant×exchange pairs with events per cell and set of months with events (bit "
        "mask, as res_pair_months): the differencing rule's count of a group's active people.",
)
RES_WEEK_MONTHS = Table(
    "res_week_months",
    _cols("week:DATE, " + _CELL + ", months:HUGEINT, pairs:BIGINT"),
    doc="Participant×exchange pairs active per UTC week (Monday) and cell, by the months of "
        "that week in which they had events (one or two bits): the differencing rule's count "
        "of a weekly series' people under any month range.",
)
RES_RETENTION_MONTHS = Table(
    "res_retention_months",
    _cols(_CELL + ", week:INTEGER, months:HUGEINT, pairs:BIGINT"),
    doc="res_retention by the months in which each pair had its events of week k (one or two "
        "bits): the differencing rule's count of a cohort's week under any month range.",
)
RES_SCORE_MONTHS = Table(
    "res_score_months",
    _cols(_CELL + ", instrument:VARCHAR, scale:VARCHAR, wave:VARCHAR, months:HUGEINT, "
          "n:BIGINT"),
    doc="Scored rows (res_person_scores) per cell, scale and wave, by the months their pair "
        "has events or answers in (bit mask, as res_pair_months): the differencing rule's "
        "count of a wave mean's rows under any month range.",
)
RES_GAIN_MONTHS = Table(
    "res_gain_months",
    _cols(_CELL + ", instrument:VARCHAR, scale:VARCHAR, months:HUGEINT, n:BIGINT"),
    doc="Complete pre/post pairs (res_person_gains) per cell and scale, by the months their "
        "pair has events or answers in (bit mask, as res_pair_months): the differencing "
        "rule's count of a gain mean's pairs under any month range.",
)

ROLLUP_TABLES: dict[str, Table] = {
    t.name: t for t in (RES_ACTIVITY_WEEKLY, RES_ACTIVITY_MONTHLY, RES_ACTIVITY_HOURLY,
                        RES_RETENTION, RES_PEOPLE, RES_RESPONSE_WAVES, RES_SCORE_CUBE,
                        RES_GAIN_CUBE, RES_PERSON_KEYS, RES_PERSON_DAYS, RES_ANSWER_DAYS,
                        RES_PERSON_SCORES, RES_PERSON_GAINS, RES_PERSON_HOURS,
                        RES_PERSON_ACTIVITIES, RES_PAIR_MONTHS, RES_PAIR_MONTH_CUBE,
                        RES_WEEK_MONTHS, RES_RETENTION_MONTHS, RES_SCORE_MONTHS,
                        RES_GAIN_MONTHS)
}

# Issue 10 §2: participants vs the comparison group (analytics.stats.comparison), computed per
# load after the tables above; appended so that their order and the exports' order stay.
RES_BALANCE = Table(
    "res_balance",
    _cols("covariate:VARCHAR, instrument:VARCHAR, scale:VARCHAR, level:VARCHAR, "
          "statistic:VARCHAR, n_participant:INTEGER, n_comparison:INTEGER, "
          "value_participant:DOUBLE, value_comparison:DOUBLE, sd_participant:DOUBLE, "
          "sd_comparison:DOUBLE, smd:DOUBLE, imbalanced:BOOLEAN, suppressed:VARCHAR"),
    doc="Baseline balance: standardised mean differences, participants vs comparison group, "
        "for each pre score and each level of the contract's covariates (|SMD| > 0.1 flagged).",
)
RES_COMPARISON = Table(
    "res_comparison",
    _cols("instrument:VARCHAR, scale:VARCHAR, method:VARCHAR, n_participant:INTEGER, "
          "n_comparison:INTEGER, estimate:DOUBLE, se_cr2:DOUBLE, df_cr2:DOUBLE, "
          "ci_low_cr2:DOUBLE, ci_high_cr2:DOUBLE, p_cr2:DOUBLE, n_clusters:INTEGER, "
          "few_clusters:BOOLEAN, adjusted_for:VARCHAR, suppressed:VARCHAR"),
    doc="Participants minus comparison group per scale: the raw difference in mean change and "
        "the ANCOVA-adjusted difference, CR2 errors clustered by exchange.",
)
RESULT_TABLES.update({t.name: t for t in (RES_BALANCE, RES_COMPARISON)})
RESULT_EXPORTS.update({t.name.removeprefix("res_"): t for t in (RES_BALANCE, RES_COMPARISON)})

# Issue 13, persistence (analytics.derive.persistence): partnerships and participants as
# durations with censoring, and classroom-to-classroom vs single-class links.
RES_PERSISTENCE_CURVES = Table(
    "res_persistence_curves",
    _cols("subject:VARCHAR, group_by:VARCHAR, group:VARCHAR, unit:VARCHAR, n:INTEGER, "
          "time:DOUBLE, survival:DOUBLE, ci_low:DOUBLE, ci_high:DOUBLE, at_risk:INTEGER, "
          "ended:INTEGER, suppressed:VARCHAR"),
    doc="Kaplan-Meier curves (95% log(-log) pointwise band) of partnerships (days from "
        "started_on) and participants (weeks from first to last activity in an exchange), "
        "overall and per grouping; still-active ones censored at the data's end date.",
)
RES_PERSISTENCE = Table(
    "res_persistence",
    _cols("subject:VARCHAR, group_by:VARCHAR, group:VARCHAR, unit:VARCHAR, n:INTEGER, "
          "ended:INTEGER, censored:INTEGER, median:DOUBLE, median_ci_low:DOUBLE, "
          "median_ci_high:DOUBLE, at_time:DOUBLE, survival_at:DOUBLE, "
          "survival_at_ci_low:DOUBLE, survival_at_ci_high:DOUBLE, logrank_chi2:DOUBLE, "
          "logrank_df:DOUBLE, logrank_p:DOUBLE, data_end:DATE, suppressed:VARCHAR"),
    doc="Persistence per group: n, ended, censored, Kaplan-Meier median duration (95% CI), "
        "survival at one time point, and the log-rank test of the grouping.",
)
RES_PERSISTENCE_COX = Table(
    "res_persistence_cox",
    _cols("subject:VARCHAR, model:VARCHAR, term:VARCHAR, level:VARCHAR, reference:VARCHAR, "
          "n:INTEGER, ended:INTEGER, n_level:INTEGER, n_reference:INTEGER, log_hr:DOUBLE, "
          "se:DOUBLE, hr:DOUBLE, ci_low:DOUBLE, ci_high:DOUBLE, p:DOUBLE, se_kind:VARCHAR, "
          "converged:BOOLEAN, suppressed:VARCHAR"),
    doc="Cox models of persistence (Efron ties, baseline hazard per cluster, sandwich errors "
        "by exchange): hazard ratio with 95% CI per level against its reference.",
)
RES_PARTNERSHIP_LINKS = Table(
    "res_partnership_links",
    _cols("link:VARCHAR, definition:VARCHAR, n:INTEGER, n_participants:INTEGER, "
          "teachers_median:DOUBLE, active_per_partnership:DOUBLE, "
          "active_per_partnership_ci_low:DOUBLE, active_per_partnership_ci_high:DOUBLE, "
          "events_per_active:DOUBLE, events_per_active_ci_low:DOUBLE, "
          "events_per_active_ci_high:DOUBLE, minutes_per_active:DOUBLE, "
          "minutes_per_active_ci_low:DOUBLE, minutes_per_active_ci_high:DOUBLE, ended:INTEGER, "
          "median_days:DOUBLE, median_days_ci_low:DOUBLE, median_days_ci_high:DOUBLE, "
          "suppressed:VARCHAR"),
    doc="Classroom-to-classroom vs single-class links (teachers per side as the proxy for "
        "classes): activity per partnership and per active participant (95% t-intervals over "
        "partnerships) beside the Kaplan-Meier median duration.",
)
PERSISTENCE_TABLES = (RES_PERSISTENCE_CURVES, RES_PERSISTENCE, RES_PERSISTENCE_COX,
                      RES_PARTNERSHIP_LINKS)
RESULT_TABLES.update({t.name: t for t in PERSISTENCE_TABLES})
RESULT_EXPORTS.update({t.name.removeprefix("res_"): t for t in PERSISTENCE_TABLES})
# Issue 13 (program analytics): reciprocity of partnerships and equity gaps
# (analytics.stats.reciprocity, analytics.stats.equity), computed per load after the tables
# above; appended so that their order and the exports' order stay.
RES_RECIPROCITY = Table(
    "res_reciprocity",
    _cols("partnership_id:VARCHAR, exchange_id:VARCHAR, cluster:VARCHAR, modality:VARCHAR, "
          "institution_a:VARCHAR, institution_b:VARCHAR, instrument:VARCHAR, scale:VARCHAR, "
          "n_a:INTEGER, mean_a:DOUBLE, ci_low_a:DOUBLE, ci_high_a:DOUBLE, n_b:INTEGER, "
          "mean_b:DOUBLE, ci_low_b:DOUBLE, ci_high_b:DOUBLE, gap:DOUBLE, gap_ci_low:DOUBLE, "
          "gap_ci_high:DOUBLE, gap_dof:DOUBLE, reciprocity:VARCHAR, reciprocity_index:DOUBLE, "
          "suppressed:VARCHAR"),
    doc="Do both sides of a partnership gain? Per partnership and scale (and a composite of "
        "all scales): each side's mean paired gain with its t interval, the gap with Welch's "
        "interval, a category (both, a_only, b_only, neither) and a reciprocity index.",
)
RES_RECIPROCITY_SHARES = Table(
    "res_reciprocity_shares",
    _cols("instrument:VARCHAR, scale:VARCHAR, group_by:VARCHAR, group:VARCHAR, "
          "n_partnerships:INTEGER, n_assessable:INTEGER, n_both:INTEGER, n_a_only:INTEGER, "
          "n_b_only:INTEGER, n_neither:INTEGER, share_reciprocal:DOUBLE, share_ci_low:DOUBLE, "
          "share_ci_high:DOUBLE, n_participants:INTEGER, suppressed:VARCHAR"),
    doc="Share of reciprocal partnerships (both sides gain) per scale, overall, by cluster and "
        "by modality, with Wilson intervals.",
)
RES_EQUITY_GAPS = Table(
    "res_equity_gaps",
    _cols("grouping:VARCHAR, measure:VARCHAR, instrument:VARCHAR, scale:VARCHAR, "
          "best_group:VARCHAR, worst_group:VARCHAR, n_best:INTEGER, n_worst:INTEGER, "
          "value_best:DOUBLE, value_worst:DOUBLE, gap:DOUBLE, se_cr2:DOUBLE, df_cr2:DOUBLE, "
          "ci_low:DOUBLE, ci_high:DOUBLE, ci_level:DOUBLE, n_groups_compared:INTEGER, "
          "groups_left_out:VARCHAR, n_clusters:INTEGER, few_clusters:BOOLEAN, "
          "suppressed:VARCHAR"),
    doc="Who is left behind? Per grouping (gender, age band, connectivity, income group) and "
        "measure (gain per scale and composite, minutes per participant, drop-out before the "
        "post survey): the gap between the best- and worst-served groups, CR2 interval by "
        "exchange, Bonferroni-adjusted for the choice of the pair.",
)
RESULT_TABLES.update({t.name: t for t in (RES_RECIPROCITY, RES_RECIPROCITY_SHARES,
                                          RES_EQUITY_GAPS)})
RESULT_EXPORTS.update({t.name.removeprefix("res_"): t for t in (
    RES_RECIPROCITY, RES_RECIPROCITY_SHARES, RES_EQUITY_GAPS)})
# Issue 13: dose–response and setting/modality/purpose (analytics.stats.dose, .moderation),
# computed per scale after the tables above; appended so that their order and the exports'
# order stay.
RES_DOSE_RESPONSE = Table(
    "res_dose_response",
    _cols("instrument:VARCHAR, scale:VARCHAR, measure:VARCHAR, method:VARCHAR, n:INTEGER, "
          "estimate:DOUBLE, se_cr2:DOUBLE, df_cr2:DOUBLE, ci_low_cr2:DOUBLE, ci_high_cr2:DOUBLE, "
          "p_cr2:DOUBLE, n_clusters:INTEGER, few_clusters:BOOLEAN, adjusted_for:VARCHAR, "
          "suppressed:VARCHAR"),
    doc="Does more participation go with more gain? Slope of the pre→post change on "
        "log1p(events or minutes logged), adjusted for modality and setting, CR2 errors by "
        "exchange. Dose is self-selected: an association, not a causal effect.",
)
RES_DOSE_BINS = Table(
    "res_dose_bins",
    _cols("instrument:VARCHAR, scale:VARCHAR, measure:VARCHAR, bin:INTEGER, n_bins:INTEGER, "
          "dose_low:DOUBLE, dose_high:DOUBLE, dose_median:DOUBLE, n:INTEGER, "
          "mean_change:DOUBLE, ci_low:DOUBLE, ci_high:DOUBLE, ci_low_cr2:DOUBLE, "
          "ci_high_cr2:DOUBLE, df_cr2:DOUBLE, n_clusters:INTEGER, few_clusters:BOOLEAN, "
          "suppressed:VARCHAR"),
    doc="Mean pre→post change per quantile bin of participation (events, minutes), with t "
        "and CR2-by-exchange intervals: the dose–response curve without a model.",
)
RES_MODERATION = Table(
    "res_moderation",
    _cols("instrument:VARCHAR, scale:VARCHAR, moderator:VARCHAR, wave:VARCHAR, row:VARCHAR, "
          "level:VARCHAR, reference:VARCHAR, n:INTEGER, n_exchanges:INTEGER, estimate:DOUBLE, "
          "se:DOUBLE, df:DOUBLE, ci_low:DOUBLE, ci_high:DOUBLE, statistic:DOUBLE, "
          "df_num:INTEGER, p:DOUBLE, estimate_cr2:DOUBLE, ci_low_cr2:DOUBLE, "
          "ci_high_cr2:DOUBLE, df_cr2:DOUBLE, p_cr2:DOUBLE, model:VARCHAR, suppressed:VARCHAR"),
    doc="Setting, modality and purpose: the gain per level from the longitudinal model "
        "(wave × attribute), each level's difference from the largest level and the "
        "interaction test.",
)
RESULT_TABLES.update({t.name: t for t in (RES_DOSE_RESPONSE, RES_DOSE_BINS, RES_MODERATION)})
RESULT_EXPORTS.update({t.name.removeprefix("res_"): t
                       for t in (RES_DOSE_RESPONSE, RES_DOSE_BINS, RES_MODERATION)})
# Issue 13: scheduling friction (analytics.stats.scheduling, analytics.derive.scheduling),
# computed per load after the tables above; appended so that their order and the exports'
# order stay.
RES_SCHEDULING = Table(
    "res_scheduling",
    _cols("partnership_id:VARCHAR, exchange_id:VARCHAR, modality:VARCHAR, "
          "institution_a:VARCHAR, institution_b:VARCHAR, tz_a:VARCHAR, tz_b:VARCHAR, "
          "start_date:DATE, end_date:DATE, school_days:INTEGER, overlap_hours_per_day:DOUBLE, "
          "zero_overlap_days:INTEGER, zero_overlap:BOOLEAN, n_participants:INTEGER, "
          "n_events:INTEGER, n_joint:INTEGER, joint_share:DOUBLE, joint_minutes_share:DOUBLE, "
          "school_hours:VARCHAR, school_days_setting:VARCHAR, sync_activities:VARCHAR, "
          "suppressed:VARCHAR"),
    doc="Do time zones throttle joint work? Per partnership: hours per school day when both "
        "institutions are in school hours (their IANA zones, the exchange's dates, DST "
        "included), days with no overlap, and the share of synchronous events.",
)
RES_SCHEDULING_MODEL = Table(
    "res_scheduling_model",
    _cols("method:VARCHAR, term:VARCHAR, estimate:DOUBLE, se_cr2:DOUBLE, df_cr2:DOUBLE, "
          "ci_low_cr2:DOUBLE, ci_high_cr2:DOUBLE, p_cr2:DOUBLE, n_partnerships:INTEGER, "
          "n_clusters:INTEGER, few_clusters:BOOLEAN, adjusted_for:VARCHAR, share_of:VARCHAR, "
          "school_hours:VARCHAR, school_days_setting:VARCHAR, sync_activities:VARCHAR, "
          "suppressed:VARCHAR"),
    doc="Does low overlap go with less joint activity? OLS slope of the joint share on "
        "overlap hours per school day (adjusted for modality), CR2 errors by exchange.",
)
SCHEDULING_TABLES = (RES_SCHEDULING, RES_SCHEDULING_MODEL)
RESULT_TABLES.update({t.name: t for t in SCHEDULING_TABLES})
RESULT_EXPORTS.update({t.name.removeprefix("res_"): t for t in SCHEDULING_TABLES})
# Issue 13: scale-up vs scale-in per cluster and term (analytics.derive.scale,
# analytics.stats.scale), computed after the tables above; appended so that their order and the
# exports' order stay.
RES_SCALE = Table(
    "res_scale",
    _cols("cluster:VARCHAR, term:VARCHAR, term_start:DATE, participants:INTEGER, "
          "participants_new:INTEGER, participants_returning:INTEGER, institutions:INTEGER, "
          "institutions_new:INTEGER, institutions_returning:INTEGER, countries:INTEGER, "
          "dosed:INTEGER, share_dosed:DOUBLE, share_dosed_ci_low:DOUBLE, "
          "share_dosed_ci_high:DOUBLE, weeks_median:DOUBLE, sustained:INTEGER, "
          "share_sustained:DOUBLE, share_sustained_ci_low:DOUBLE, "
          "share_sustained_ci_high:DOUBLE, institutions_next:INTEGER, "
          "share_institutions_next:DOUBLE, share_institutions_next_ci_low:DOUBLE, "
          "share_institutions_next_ci_high:DOUBLE, next_term_in_data:BOOLEAN, "
          "previous_term:VARCHAR, participants_previous:INTEGER, breadth_change_pct:DOUBLE, "
          "depth_change:DOUBLE, depth_change_ci_low:DOUBLE, depth_change_ci_high:DOUBLE, "
          "quadrant:VARCHAR, dose_sessions:INTEGER, dose_minutes:DOUBLE, "
          "sustained_weeks:INTEGER, suppressed:VARCHAR"),
    doc="Scale-up vs scale-in per cluster and term (calendar half-year of the exchange's "
        "start): breadth (participants, institutions, countries reached; new vs returning) "
        "against depth (share reaching the meaningful dose, Wilson CI; median active weeks; "
        "share active in 4+ weeks; institutions returning next term) and the term-on-term "
        "quadrant (Newcombe CI for the change in the dosed share).",
)
RESULT_TABLES[RES_SCALE.name] = RES_SCALE
RESULT_EXPORTS[RES_SCALE.name.removeprefix("res_")] = RES_SCALE
# Issue 13: cost per outcome (analytics.stats.cost), from exchange budgets and the rates input
# kind; appended so that the order of the tables above and of the exports stays.
RES_COST = Table(
    "res_cost",
    _cols("group_by:VARCHAR, group:VARCHAR, currency:VARCHAR, converted:BOOLEAN, "
          "converted_from:VARCHAR, n_exchanges_group:INTEGER, n_exchanges_no_budget:INTEGER, "
          "n_exchanges:INTEGER, budget:DOUBLE, n_participants:INTEGER, n_active:INTEGER, "
          "cost_per_participant:DOUBLE, cost_per_active:DOUBLE, n_gain:INTEGER, "
          "mean_gain:DOUBLE, mean_gain_ci_low:DOUBLE, mean_gain_ci_high:DOUBLE, "
          "n_clusters:INTEGER, few_clusters:BOOLEAN, cost_per_gain:DOUBLE, "
          "cost_per_gain_ci_low:DOUBLE, cost_per_gain_ci_high:DOUBLE, unbounded:BOOLEAN, "
          "note:VARCHAR, gain_measure:VARCHAR, ci_method:VARCHAR, suppressed:VARCHAR"),
    doc="What does an outcome cost? Per program and cluster of the exchanges and per currency "
        "(or converted into the rates' base): budget per participant, per active participant "
        "and per unit of standardised gain with a 95% CI; exchanges without a budget counted.",
)
RESULT_TABLES[RES_COST.name] = RES_COST
RESULT_EXPORTS[RES_COST.name.removeprefix("res_")] = RES_COST
