"""Plain, testable step logic: ingest, probe, validate, plan, cut and sample."""
