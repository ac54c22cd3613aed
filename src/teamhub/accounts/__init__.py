"""teamhub's own accounts: the store (names, argon2 password hashes, admin flag)."""
