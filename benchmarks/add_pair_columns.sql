-- One-off: give a warehouse built before p1-pairs (issue 17) the pre/post columns of
-- res_person_gains, e.g. the 1M demo copy that benchmarks/slice.py is measured on.
ALTER TABLE res_person_gains ADD COLUMN pre DOUBLE;
ALTER TABLE res_person_gains ADD COLUMN post DOUBLE;
CREATE TEMP TABLE _pp AS
  SELECT pid, exchange_id, instrument, scale,
         max(score) FILTER (WHERE wave = 'pre') AS pre,
         max(score) FILTER (WHERE wave = 'post') AS post
  FROM res_person_scores WHERE wave IN ('pre', 'post') GROUP BY ALL;
UPDATE res_person_gains g SET pre = _pp.pre, post = _pp.post FROM _pp
  WHERE g.pid = _pp.pid AND g.exchange_id = _pp.exchange_id
    AND g.instrument = _pp.instrument AND g.scale = _pp.scale;
CHECKPOINT;
