"""`python -m daemon.cli`: the same as the `qi2lab-ingest` command."""

from daemon.cli.main import main

raise SystemExit(main())
