"""The store: PostgreSQL (reached only through SQL functions), its migrations and SQL."""
