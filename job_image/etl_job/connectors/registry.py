"""The registries of sources and sinks, keyed by `sourceType` and `sinkType`.

A source turns its spec block into a DataFrame; a sink writes a DataFrame as its spec block says.
Adding one is adding one class and registering it; each connector registers itself in its own
module, and importing connectors.catalog registers them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from etl_job.contract import ConfigurationError
from etl_job.runtime.context import RunContext


class Source(Protocol):
    def read(self, block: Any, context: RunContext) -> Any:
        """The rows of the source, as a DataFrame."""
        ...


SOURCES: dict[str, Source] = {}


def register_source(*source_types: str) -> Callable[[type[Any]], type[Any]]:
    def decorate(cls: type[Any]) -> type[Any]:
        for source_type in source_types:
            SOURCES[source_type] = cls()
        return cls

    return decorate


def read_source(block: Any, context: RunContext) -> Any:
    """Read any extract block (the pipeline's own, or a Join's right side)."""
    source = SOURCES.get(block.source_type)
    if source is None:
        raise ConfigurationError(f"no connector for sourceType {block.source_type}", stage="extract")
    return source.read(block, context)


class Sink(Protocol):
    def write(self, frame: Any, block: Any, context: RunContext) -> None:
        """Write every row of `frame`; raise SinkRejected when the target refuses."""
        ...


SINKS: dict[str, Sink] = {}


def register_sink(*sink_types: str) -> Callable[[type[Any]], type[Any]]:
    def decorate(cls: type[Any]) -> type[Any]:
        for sink_type in sink_types:
            SINKS[sink_type] = cls()
        return cls

    return decorate


def sink_for(block: Any) -> Sink:
    sink = SINKS.get(block.sink_type)
    if sink is None:
        raise ConfigurationError(f"no connector for sinkType {block.sink_type}", stage="load")
    return sink
