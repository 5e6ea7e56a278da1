"""The built images, run as users run them: each as its non-root user, with a read-only root
filesystem, no network, and /tmp as the only writable place. `job_image/build-images.sh` builds
them once per session (cached by content, so seconds when nothing changed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from etl_operator.render import IMAGE_SCHEMAS_DIR, JOB_ENTRY_POINT, SPARK_UID

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
BUILD = ROOT / "job_image" / "build-images.sh"
OPERATOR_UID = 10001
HASH_LABEL = "io.sparkops.content-hash"
#: /tmp (noexec, as Docker mounts a tmpfs) is the only writable place. With no network the
#: container's own name resolves nowhere, and Spark needs its host name: `localhost` is in /etc/hosts
#: (a pod's name always resolves, through the kubelet's /etc/hosts).
SANDBOX = ("--network", "none", "--hostname", "localhost", "--read-only", "--tmpfs", "/tmp")


@dataclass(frozen=True)
class Images:
    job: str
    operator: str


def _run(argv: Sequence[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def docker_run(
    image: str, *command: str, options: Sequence[str] = (), timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return _run(["docker", "run", "--rm", *SANDBOX, *options, image, *command], timeout=timeout)


@pytest.fixture(scope="session")
def images() -> Images:
    if os.geteuid() != 0:
        pytest.skip("building images needs root (debootstrap, and starting dockerd)")
    installed = _run([str(ROOT / ".ci" / "install-system-packages.sh"), "--images"])
    if installed.returncode != 0:
        pytest.skip(f"Docker cannot be installed here: {installed.stderr.strip()[-500:]}")
    built = _run([str(BUILD)], timeout=3600)
    assert built.returncode == 0, built.stderr
    names = built.stdout.split()
    job = next(name for name in names if name.startswith("sparkops-etl/job:"))
    operator = next(name for name in names if name.startswith("sparkops-etl/operator:"))
    return Images(job=job, operator=operator)


# --- the job image ------------------------------------------------------------------------------


def test_job_image_runs_as_spark_user_with_root_group(images: Images) -> None:
    ran = docker_run(images.job, "id")
    assert ran.returncode == 0, ran.stderr
    assert re.match(rf"uid={SPARK_UID}\(spark\) gid=0\(root\)", ran.stdout), ran.stdout


def test_job_image_cli_answers(images: Images) -> None:
    ran = docker_run(images.job, "etl", "--version")
    assert ran.returncode == 0, ran.stderr
    version = images.job.rsplit(":", 1)[1]  # build-images.sh prints the version tags
    assert ran.stdout.strip() == f"etl {version}"
    ran = docker_run(images.job, "etl", "--help")
    assert ran.returncode == 0, ran.stderr
    assert "run" in ran.stdout and "validate" in ran.stdout


def test_job_image_without_a_command_prints_the_cli_help(images: Images) -> None:
    ran = docker_run(images.job)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("usage: etl"), ran.stdout


def test_job_image_has_what_the_operator_renders_and_no_jdk(images: Images) -> None:
    """The driver pod's command names JOB_ENTRY_POINT and spark-submit; the image must have both,
    Spark's jars with the connectors and the functions jar, and the schemas at IMAGE_SCHEMAS_DIR."""
    script = (
        f"test -f {JOB_ENTRY_POINT} && echo entry-point;"
        "command -v etl spark-submit python3;"
        'ls "$SPARK_HOME/jars" | grep -E "^(etl-functions|postgresql|mariadb-java-client|hadoop-aws|'
        'spark-sql-kafka|spark-avro)" | sed "s/[-_][0-9].*//" | sort -u;'
        f"ls {IMAGE_SCHEMAS_DIR};"
        "command -v javac || echo no-javac"
    )
    ran = docker_run(images.job, "bash", "-c", script)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.split()
    assert "entry-point" in lines
    assert lines[1:4] == [f"/opt/etl/venv/bin/{name}" for name in ("etl", "spark-submit", "python3")]
    for jar in ("etl-functions.jar", "postgresql", "mariadb-java-client", "hadoop-aws", "spark-avro"):
        assert jar in lines, (jar, lines)
    assert "spark-sql-kafka" in lines, lines
    assert "user-event.avsc" in lines
    assert lines[-1] == "no-javac"


def test_job_image_runs_the_quickstart_pipeline(images: Images, tmp_path: Path) -> None:
    """The sample pipeline end to end in local Spark mode, inside the container: the image's data
    and schemas, output and metrics written only to the mounted folder."""
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the container's uid 185 writes here
    pipeline = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    spec = pipeline["spec"]
    spec["extract"]["path"] = "/opt/etl/examples/data/events.csv"
    spec["transforms"][1]["right"]["path"] = "/opt/etl/examples/data/users.csv"
    spec["load"]["path"] = "/out/user-summary/"
    (out / "quickstart.yaml").write_text(yaml.safe_dump(pipeline))
    started = time.monotonic()
    ran = docker_run(
        images.job,
        "etl", "run", "/out/quickstart.yaml",
        "--master", "local[2]", "--termination-log", "/out/metrics.json",
        options=("-v", f"{out}:/out", "--memory", "2g"),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recordsLoaded"] > 0, metrics
    assert metrics["recordsFailed"] == 0, metrics
    partitions = {path.parent.name for path in out.glob("user-summary/country=*/*.parquet")}
    assert partitions, sorted(str(path) for path in out.rglob("*"))
    assert (out / "user-summary" / "_SUCCESS").exists()
    print(f"quickstart in the job image: {time.monotonic() - started:.1f}s, {metrics['recordsLoaded']} rows")


EXECUTOR_ENV = {
    "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@127.0.0.1:7078",
    "SPARK_EXECUTOR_ID": "3",
    "SPARK_EXECUTOR_CORES": "2",
    "SPARK_EXECUTOR_MEMORY": "512m",
    "SPARK_APPLICATION_ID": "spark-application-1",
    "SPARK_EXECUTOR_POD_IP": "10.0.0.7",
    "SPARK_EXECUTOR_POD_NAME": "quickstart-1-exec-3",
    "SPARK_RESOURCE_PROFILE_ID": "0",
    # Out of lexical order on purpose: the driver numbers them, and 10 comes after 2.
    "SPARK_JAVA_OPT_10": "-Dspark.driver.port=7078",
    "SPARK_JAVA_OPT_2": "-Dspark.authenticate=false",
    "SPARK_JAVA_OPT_0": "-Djava.net.preferIPv6Addresses=false",
}


def _env_options(env: dict[str, str]) -> list[str]:
    return [option for key, value in env.items() for option in ("-e", f"{key}={value}")]


def test_executor_command_is_sparks_own(images: Images) -> None:
    """What `executor` starts, as Apache Spark's image starts it: the executor JVM options in the
    driver's order, the heap, Spark's jars on the classpath, and the Kubernetes executor backend
    with the pod's identity."""
    ran = docker_run(
        images.job, "executor", options=[*_env_options(EXECUTOR_ENV), "-e", "ETL_ENTRYPOINT_DRY_RUN=1"]
    )
    assert ran.returncode == 0, ran.stderr
    argv = ran.stdout.splitlines()
    spark_home = "/opt/etl/venv/lib/python3.11/site-packages/pyspark"
    assert argv == [
        "java",
        "-Djava.net.preferIPv6Addresses=false",
        "-Dspark.authenticate=false",
        "-Dspark.driver.port=7078",
        "-Xms512m",
        "-Xmx512m",
        "-cp",
        f"{spark_home}/conf:{spark_home}/jars/*",
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url", "spark://CoarseGrainedScheduler@127.0.0.1:7078",
        "--executor-id", "3",
        "--cores", "2",
        "--app-id", "spark-application-1",
        "--hostname", "10.0.0.7",
        "--resourceProfileId", "0",
        "--podName", "quickstart-1-exec-3",
    ]  # fmt: skip


def test_executor_starts_and_looks_for_its_driver(images: Images) -> None:
    """The real executor JVM from that command: the backend class loads from the image's jars and
    tries the driver, which is not there (no network), so it gives up naming the driver URL."""
    env = {
        **EXECUTOR_ENV,
        "SPARK_EXECUTOR_POD_IP": "127.0.0.1",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@127.0.0.1:1",
    }
    ran = docker_run(images.job, "executor", options=_env_options(env), timeout=180)
    output = ran.stdout + ran.stderr
    assert ran.returncode != 0, output[-3000:]
    assert "ClassNotFoundException" not in output, output[-3000:]
    assert "KubernetesExecutorBackend" in output or "CoarseGrainedExecutorBackend" in output, output[-3000:]
    assert "127.0.0.1:1" in output, output[-3000:]


def test_executor_without_its_driver_url_stops_naming_it(images: Images) -> None:
    env = {key: value for key, value in EXECUTOR_ENV.items() if key != "SPARK_DRIVER_URL"}
    ran = docker_run(images.job, "executor", options=_env_options(env))
    assert ran.returncode == 64
    assert "executor: SPARK_DRIVER_URL is not set" in ran.stderr


# --- the operator image -------------------------------------------------------------------------


def test_operator_image_runs_as_its_own_user(images: Images) -> None:
    ran = docker_run(images.operator, options=("--entrypoint", "id", "--user", str(OPERATOR_UID)))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"uid={OPERATOR_UID}(etl-operator)"), ran.stdout
    default = docker_run(images.operator, options=("--entrypoint", "id"))
    assert default.stdout == ran.stdout


def test_operator_entry_point_checks_its_settings(images: Images) -> None:
    """`python -m etl_operator` has no --help: it imports every handler (kopf, the Kubernetes client,
    the contract), checks its ETL_OPERATOR_* settings and starts. A bad setting stops it before it
    looks for a cluster, naming the variable, which shows the whole import chain works in the image."""
    ran = docker_run(images.operator, options=("-e", "ETL_OPERATOR_LOG_LEVEL=LOUD"))
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stderr.startswith("etl-operator: ") and "ETL_OPERATOR_LOG_LEVEL" in ran.stderr, ran.stderr


def test_operator_image_has_no_jvm_and_no_spark(images: Images) -> None:
    ran = docker_run(
        images.operator,
        "-c",
        "import importlib.util as u, shutil; import etl_operator.handlers, kopf, kubernetes;"
        "print(shutil.which('java'), u.find_spec('pyspark'))",
        options=("--entrypoint", "python3"),
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["None", "None"]


# --- the build ----------------------------------------------------------------------------------


def test_images_are_cached_by_content(images: Images) -> None:
    """A second build with nothing changed finds both images by their content hash."""
    started = time.monotonic()
    again = _run([str(BUILD)])
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == [images.job, images.operator]
    assert "job image: cached" in again.stderr and "operator image: cached" in again.stderr, again.stderr
    assert time.monotonic() - started < 60
    for image in (images.job, images.operator):
        inspected = _run(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", image])
        labels = json.loads(inspected.stdout)
        hash_tag = f"{image.split(':')[0]}:{labels[HASH_LABEL]}"
        same = _run(["docker", "image", "inspect", "-f", "{{.Id}}", image, hash_tag])
        assert len(set(same.stdout.split())) == 1, same.stdout + same.stderr
