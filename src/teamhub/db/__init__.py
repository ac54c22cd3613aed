"""teamhub's own database: the store's tables, engines for sqlite and PostgreSQL, migrations."""
