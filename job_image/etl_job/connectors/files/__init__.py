"""Files on any Hadoop filesystem (S3 stores, file://, local paths): the file source and sink, CSV, paths."""
