"""The store as the last pre-alembic sqlite schema (version 6) left it.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("admin", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created", sa.Text, nullable=False),
        sa.Column("blocked", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("pending", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "groups",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("created", sa.Text, nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column("group_name", sa.Text, sa.ForeignKey("groups.name", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("user_name", sa.Text, sa.ForeignKey("accounts.name", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_table(
        "projects",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("description", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("archived", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created", sa.Text, nullable=False),
    )
    op.create_table(
        "project_grants",
        sa.Column("project", sa.Text, sa.ForeignKey("projects.name", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("kind", sa.Text, sa.CheckConstraint("kind IN ('user', 'group')"),
                  primary_key=True),
        sa.Column("principal", sa.Text, primary_key=True),
        sa.Column("access", sa.Text, sa.CheckConstraint("access IN ('read', 'write')"),
                  nullable=False),
    )
    op.create_table(
        "project_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=sa.text("''")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "reset_links",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, sa.ForeignKey("accounts.name", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("created", sa.Text, nullable=False),
        sa.Column("expires", sa.Text, nullable=False),
        sa.Column("used", sa.Text),
    )
    op.create_table(
        "login_failures",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("lockouts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("locked_until", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("last_failure", sa.Float, nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    for table in ("login_failures", "reset_links", "project_log", "project_grants",
                  "projects", "memberships", "groups", "accounts"):
        op.drop_table(table)
