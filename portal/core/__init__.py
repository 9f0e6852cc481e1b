"""Ground floor: settings, tables, the database, the agreement catalog, signing, tokens,
password hashing, named errors, value checks, sign-in limits. Imports nothing above it."""
