"""`python -m workstream` is the `workstream` command."""

from workstream.cli import main

raise SystemExit(main())
