"""The node side: the prolog and epilog hooks, the node agent and its sampler, the per-job spool.

Runs as root on compute nodes, so it imports nothing from storage, accounting, query, reports or cli
(tests/test_layout.py checks it): a node measures and writes records, it never reads the database.
"""
