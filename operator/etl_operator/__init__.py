"""The control plane: a kopf operator that turns ETLPipeline objects into Spark driver pods."""
