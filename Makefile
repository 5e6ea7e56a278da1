# Set-up and checks. `make run` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ETL_CACHE_DIR ?= $(HOME)/.cache/sparkops-etl
PYTEST_ARGS ?=

.PHONY: run test unit bench bench-operator bench-db bench-kafka bench-streaming lint crds system-packages test-system-packages components kube minio prometheus helm kafka spark-jars functions images image-system-packages node node-system-packages sandbox sandbox-down bench-cluster clean

## run: run the quickstart pipeline in local Spark mode on the sample data in examples/
run: system-packages $(VENV)/.installed
	ETL_SPARK_JARS="$$(job_image/build-functions.sh)" $(BIN)/etl run examples/quickstart.yaml --show 10

## test: install and start everything the tests need, run the whole suite
test: test-system-packages $(VENV)/.installed
	$(MAKE) -j4 --no-print-directory components
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## unit: the fast tests alone (no servers)
unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

## bench: the job against hand-written PySpark (BENCH_ROWS rows, default 5 million)
BENCH_ROWS ?= 5000000
bench: system-packages $(VENV)/.installed
	$(BIN)/python bench/job_vs_pyspark.py --rows $(BENCH_ROWS)

## bench-operator: the operator launching BENCH_PIPELINES ETLPipelines made at once (default 500); its memory at BENCH_PIPELINES_TOTAL (1000)
BENCH_PIPELINES ?= 500
BENCH_PIPELINES_TOTAL ?= 1000
bench-operator: $(VENV)/.installed kube
	$(BIN)/python bench/operator_launch.py --pipelines $(BENCH_PIPELINES) --total $(BENCH_PIPELINES_TOTAL)

## bench-db: the PostgreSQL and MySQL upsert against COPY / LOAD DATA (BENCH_DB_ROWS rows, default 1 million)
BENCH_DB_ROWS ?= 1000000
bench-db: test-system-packages $(VENV)/.installed
	$(BIN)/python bench/db_upsert_vs_bulk.py --rows $(BENCH_DB_ROWS)

## bench-kafka: a Kafka topic to Parquet through the job against hand-written PySpark (BENCH_KAFKA_ROWS messages, default 2 million)
BENCH_KAFKA_ROWS ?= 2000000
bench-kafka: system-packages $(VENV)/.installed kafka spark-jars
	$(BIN)/python bench/kafka_vs_pyspark.py --rows $(BENCH_KAFKA_ROWS)

## bench-streaming: a streaming run (Kafka JSON, windowed aggregate upserted into PostgreSQL) against hand-written Structured Streaming: throughput over BENCH_STREAMING_MESSAGES messages (default 5 million), latency at 50,000 events/s
BENCH_STREAMING_MESSAGES ?= 5000000
bench-streaming: test-system-packages $(VENV)/.installed kafka spark-jars functions
	$(BIN)/python bench/streaming_vs_pyspark.py --messages $(BENCH_STREAMING_MESSAGES)

## lint: ruff, mypy and hadolint
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile.operator Dockerfile.job

## crds: regenerate the ETLPipeline CRD in crds/ from the pipeline contract (job_image/etl_job/contract/)
crds: $(VENV)/.installed
	$(BIN)/python -c "from etl_job.contract.crd import crd_yaml; print(crd_yaml(), end='')" > crds/etlpipelines.etl.sparkops.io.yaml
	cp crds/etlpipelines.etl.sparkops.io.yaml helm/sparkops-etl/crds/etlpipelines.etl.sparkops.io.yaml

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[operator,job,dev]'
	touch $@

system-packages:
	.ci/install-system-packages.sh

test-system-packages:
	.ci/install-system-packages.sh --tests

image-system-packages:
	.ci/install-system-packages.sh --images

## images: build sparkops-etl/job and sparkops-etl/operator (Docker; a local debootstrap base; cached by content)
images: image-system-packages
	job_image/build-images.sh

node-system-packages:
	.ci/install-system-packages.sh --node

## bench-cluster: the quickstart through kubectl apply on the real node (local mode and 2 executors) against etl run on the host
BENCH_CLUSTER_ROUNDS ?= 3
bench-cluster: test-system-packages $(VENV)/.installed kube node helm minio functions
	$(BIN)/python bench/cluster_vs_local.py --rounds $(BENCH_CLUSTER_ROUNDS)

## sandbox: a real single-node cluster with the images, the operator's chart, PostgreSQL, MySQL, Kafka and S3; writes .sandbox/env
sandbox: test-system-packages $(VENV)/.installed kube node helm kafka minio
	$(BIN)/python -m tests.infra.sandbox up

## sandbox-down: stop everything `make sandbox` started and remove what it made
sandbox-down: $(VENV)/.installed
	$(BIN)/python -m tests.infra.sandbox down

## components: build or fetch every harness component into $(ETL_CACHE_DIR) (cached by version), and the images
components: kube node minio prometheus helm kafka spark-jars functions images

kube:
	tests/infra/build/build-kube.sh
node:
	tests/infra/build/build-node.sh
minio:
	tests/infra/build/build-minio.sh
prometheus:
	tests/infra/build/build-prometheus.sh
helm:
	tests/infra/build/build-helm.sh
kafka:
	tests/infra/build/fetch-kafka.sh
spark-jars:
	job_image/fetch-jars.sh
functions:
	job_image/build-functions.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache examples/output
