.PHONY: bootstrap test lint ci kafka-start kafka-stop kafka-status pg-start pg-stop pg-status

bootstrap:
	scripts/bootstrap

# make test ARGS="-q tests/unit -k spec"
test:
	scripts/test $(ARGS)

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

ci:
	bash .ci/run

kafka-start:
	scripts/local-kafka start

kafka-stop:
	scripts/local-kafka stop

kafka-status:
	scripts/local-kafka status

pg-start:
	scripts/local-postgres start

pg-stop:
	scripts/local-postgres stop

pg-status:
	scripts/local-postgres status
