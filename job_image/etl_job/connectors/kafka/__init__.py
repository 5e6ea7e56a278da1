"""Kafka topics: the source and sink, their options, the admin client's checks and the Avro codec."""
