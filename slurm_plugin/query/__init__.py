"""Queries users run: one job's summary (finished or running), job listings, who may see what, the service."""
