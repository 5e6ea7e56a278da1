"""The data plane: the PySpark job that runs one ETLPipeline (extract, validate, transform, load)."""
