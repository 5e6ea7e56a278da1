"""Data quality: Avro schemas, row validation, and failing on or setting aside bad records."""
