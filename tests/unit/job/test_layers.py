"""The job's packages import only downward: contract at the bottom, then runtime, quality, connectors
and transforms, with pipeline and cli on top; and the operator imports only the contract."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
JOB = REPO / "job_image" / "etl_job"
OPERATOR = REPO / "operator" / "etl_operator"

#: What each package of etl_job may import of etl_job besides itself.
ALLOWED: dict[str, set[str]] = {
    "contract": set(),
    "runtime": {"contract"},
    "quality": {"contract", "runtime"},
    "connectors": {"contract", "runtime", "quality"},
    "transforms": {"contract", "runtime", "quality"},
}
#: Besides the standard library, all the contract may import: the operator runs no Spark.
CONTRACT_THIRD_PARTY = {"pydantic", "yaml"}


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """Every module `path` imports, at the top or inside a function, with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            # `from etl_job import contract` imports the package etl_job.contract.
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def package_of(module: str) -> str | None:
    """The etl_job package a dotted name belongs to; None outside etl_job or on top of it."""
    parts = module.split(".")
    if parts[0] != "etl_job" or len(parts) < 2 or parts[1] not in ALLOWED:
        return None
    return parts[1]


def test_every_module_of_the_job_sits_in_a_package_or_on_top() -> None:
    top = {path.name for path in JOB.glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "cli.py", "pipeline.py", "replay.py", "streaming.py"}
    packages = {path.name for path in JOB.iterdir() if (path / "__init__.py").is_file()}
    assert packages == set(ALLOWED)


def test_a_package_imports_only_the_packages_below_it() -> None:
    wrong = []
    for path in sorted(JOB.glob("*/**/*.py")):
        package = path.relative_to(JOB).parts[0]
        for line, module in imported_modules(path):
            parts = module.split(".")
            if parts[0] != "etl_job" or len(parts) < 2:
                continue
            imported = package_of(module)
            if imported is None or (imported != package and imported not in ALLOWED[package]):
                wrong.append(f"{path.relative_to(JOB)}:{line} ({package}) imports {module}")
    assert not wrong, "imports from above:\n" + "\n".join(wrong)


def test_the_contract_imports_only_pydantic_yaml_and_the_standard_library() -> None:
    outside = [
        f"{path.relative_to(JOB)}:{line} imports {module}"
        for path in sorted((JOB / "contract").glob("*.py"))
        for line, module in imported_modules(path)
        if (root := module.split(".")[0]) not in sys.stdlib_module_names
        and root not in CONTRACT_THIRD_PARTY | {"etl_job"}
    ]
    assert not outside, "\n".join(outside)


def test_the_operator_imports_only_the_contract_of_the_job() -> None:
    outside = [
        f"{path.name}:{line} imports {module}"
        for path in sorted(OPERATOR.glob("*.py"))
        for line, module in imported_modules(path)
        if module.startswith("etl_job.") and not module.startswith("etl_job.contract")
    ]
    assert not outside, "\n".join(outside)
