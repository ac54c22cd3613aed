"""The account store's tables: the one definition that migrations, copies and checks use.

Column types stay those of the sqlite store that came before (flags are integers,
times ISO 8601 text), so files written by earlier teamhubs need no data change and
the same SQL runs on sqlite and PostgreSQL. A change here needs a new revision in
migrations/versions (tests/unit/test_db_schema.py fails until the two agree).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)

metadata = MetaData()

accounts = Table(
    "accounts", metadata,
    Column("name", Text, primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("admin", Integer, nullable=False, server_default=text("0")),
    Column("created", Text, nullable=False),
    # A blocked account keeps its name, files and grants but cannot log in.
    Column("blocked", Integer, nullable=False, server_default=text("0")),
    # A signed-up account waits, pending, until an admin approves it.
    Column("pending", Integer, nullable=False, server_default=text("0")),
)

groups = Table(
    "groups", metadata,
    Column("name", Text, primary_key=True),
    Column("created", Text, nullable=False),
)

memberships = Table(
    "memberships", metadata,
    Column("group_name", Text, ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True),
    Column("user_name", Text, ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True),
)

projects = Table(
    "projects", metadata,
    Column("name", Text, primary_key=True),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("archived", Integer, nullable=False, server_default=text("0")),
    Column("created", Text, nullable=False),
)

# Grants name a principal by kind rather than by foreign key: removing a user or
# group must also strip ACLs on disk, which the CLI does explicitly.
project_grants = Table(
    "project_grants", metadata,
    Column("project", Text, ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True),
    Column("kind", Text, CheckConstraint("kind IN ('user', 'group')"), primary_key=True),
    Column("principal", Text, primary_key=True),
    Column("access", Text, CheckConstraint("access IN ('read', 'write')"), nullable=False),
)

# No foreign key on purpose: the audit log outlives the projects it describes.
project_log = Table(
    "project_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=text("''")),
    sqlite_autoincrement=True,
)

# Reset links are stored only as the SHA-256 of their token.
reset_links = Table(
    "reset_links", metadata,
    Column("token_hash", Text, primary_key=True),
    Column("name", Text, ForeignKey("accounts.name", ondelete="CASCADE"), nullable=False),
    Column("created", Text, nullable=False),
    Column("expires", Text, nullable=False),
    Column("used", Text),
)

# No foreign key: unknown names and PAM accounts are counted too (accounts/lockout.py).
login_failures = Table(
    "login_failures", metadata,
    Column("name", Text, primary_key=True),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("lockouts", Integer, nullable=False, server_default=text("0")),
    Column("locked_until", Float, nullable=False, server_default=text("0")),
    Column("last_failure", Float, nullable=False, server_default=text("0")),
)

# Parents before children: the order to copy and to restore in.
TABLES = tuple(metadata.sorted_tables)
