# hivau: `make run` (the main job) and `make test` (ruff, import-linter, then the whole suite) each install what they need.
.PHONY: run test stop bootstrap bench clean

bootstrap:
	bash scripts/bootstrap.sh

run: bootstrap
	bash scripts/run.sh

test: bootstrap
	bash scripts/bootstrap_exports.sh
	bash scripts/lint.sh
	.venv/bin/python -m pytest -q

stop:
	bash scripts/stop.sh

bench: bootstrap
	.venv/bin/python benchmarks/bench_cut.py
	.venv/bin/python benchmarks/bench_rollup.py
	.venv/bin/python benchmarks/bench_review.py

clean: stop
	rm -rf .state
