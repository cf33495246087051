"""Accounting: records into the database exactly once (ingest, delivery), and their carbon footprints."""
