"""PostgreSQL and MySQL over JDBC: the source and sink, their SQL dialects, bulk load, client and errors."""
