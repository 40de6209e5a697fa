"""The actors (pykka) and the plumbing between them: events, replies, the ticker.

pykka is used only here and in `workstream.service`.
"""
