"""alembic environment: always run from teamhub.db.upgrade with a connection it holds."""

from alembic import context

from teamhub.db.schema import metadata

context.configure(connection=context.config.attributes["connection"],
                  target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
