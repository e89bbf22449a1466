"""`python -m analytics …`: see `analytics.outputs.cli`."""

from analytics.outputs.cli import main

raise SystemExit(main())
