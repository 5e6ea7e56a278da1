"""The transform stage: one class per `transformType`, and the offline check of a spec's SQL."""
