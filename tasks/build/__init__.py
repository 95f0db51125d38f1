"""Building: annotations in (ingest), videos probed, events and clips planned and cut, frames sampled."""
