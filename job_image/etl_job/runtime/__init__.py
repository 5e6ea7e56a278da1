"""The run's plumbing: the Spark session, the run context, metrics, logs, retries and the JVM functions."""
