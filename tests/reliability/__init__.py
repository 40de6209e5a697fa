"""Reliability scenarios (../shared/RELIABILITY.md) against the real server: a load
generator, a probe handler with a ledger, a checker; see docs/reliability.md."""
