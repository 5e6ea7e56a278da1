"""Sources and sinks: the registries, one subpackage per kind of store, and the dead-letter queue."""
