# The two commands of the README. Each sets everything up first if needed (.venv at the repo root).
.PHONY: demo test

demo:
	@bash installer/setup.sh
	.venv/bin/cytoreview demo --out demo-output

test:
	@bash installer/setup.sh --dev
	@bash installer/run-tests.sh
