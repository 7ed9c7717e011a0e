"""``python -m fastnn``: the same command line as the ``fastnn`` console script."""

from fastnn.cli import main

raise SystemExit(main())
