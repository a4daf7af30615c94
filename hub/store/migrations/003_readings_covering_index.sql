-- Chart queries (Store.Readings) read only t_ms and value of one device's
-- sensor: make their index cover both (and kind, which the partial index's
-- WHERE names), so a week of 1 Hz readings is aggregated from the index
-- alone instead of one table lookup per reading (dashboard benchmark:
-- docs/benchmarks.md, "Dashboard").
DROP INDEX IF EXISTS log_sensor_t;
CREATE INDEX log_sensor_tv ON log(device_id, sensor, t_ms, value, kind) WHERE kind = 'reading';
