"""One set of pinned versions: versions.env, the Python pins and the images agree."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pyspark

from tests.infra.versions import REPO_ROOT, versions


def _pins() -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    pins = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        assert version, f"{requirement} in pyproject.toml is not pinned to a tested version"
        pins[name.lower()] = version
    return pins


def test_every_dependency_is_pinned_and_pyspark_matches_the_spark_version() -> None:
    assert _pins()["pyspark"] == versions()["SPARK_VERSION"]


def test_installed_pyspark_is_the_pinned_one() -> None:
    assert metadata.version("pyspark") == versions()["SPARK_VERSION"]


def test_hadoop_version_matches_the_hadoop_that_pyspark_ships() -> None:
    # hadoop-aws must be the same release as Spark's hadoop-client jars, or S3A fails at run time.
    jars = Path(pyspark.__file__).parent / "jars"
    shipped = {
        m.group(1)
        for jar in jars.glob("hadoop-client-api-*.jar")
        if (m := re.match(r"hadoop-client-api-(.+)\.jar", jar.name))
    }
    assert shipped == {versions()["HADOOP_VERSION"]}


def test_the_job_image_resolves_jars_with_the_harness_script_and_versions_file() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile.job").read_text()
    assert "COPY versions.env" in dockerfile
    assert "job_image/fetch-jars.sh" in dockerfile
