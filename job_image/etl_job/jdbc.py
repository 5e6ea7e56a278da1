"""PostgreSQL and MySQL: the JDBC source and sink (upsert through a bulk-loaded staging table)."""
