"""Kafka topics: the batch source and the sink, with JSON or Avro values."""
