"""Where relative paths in a pipeline point: the folder of the manifest that names them."""

from __future__ import annotations

from pathlib import Path


def resolve_path(path: str, base_dir: Path | None) -> str:
    """A Hadoop path as Spark takes it. URIs (s3a://, file://, hdfs://) and absolute paths are
    left alone; a relative path is taken from `base_dir`, so `etl run examples/x.yaml` works
    from any working directory."""
    if "://" in path or Path(path).is_absolute() or base_dir is None:
        return path
    resolved = str((base_dir / path).resolve())
    return resolved + "/" if path.endswith("/") else resolved
