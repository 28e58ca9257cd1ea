"""State several hosts share, on PostgreSQL (the only psycopg2 importer): schema, logs."""
