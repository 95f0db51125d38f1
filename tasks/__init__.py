"""Plain step logic by stage (build, text, review, release), the per-shard steps over the store, and the manifest
writer; the Prefect tasks and flows that run them are the thin layer in hivau.flows."""
