"""The actors (pykka) and the plumbing between them: events, replies, asks, the ticker.

pykka is imported only here and in `workstream.extensions` (which hands actor refs to
extensions); `tests/unit/test_layers.py` keeps it so.
"""
