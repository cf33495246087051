"""Monthly reports per account, user, group or partition: built from the database, rendered as text, CSV,
JSON or HTML."""
