"""alembic's script folder for the account store (env.py and versions/)."""
