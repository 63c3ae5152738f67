"""``python -m veilset ...`` is the ``veilset`` console script."""
from veilset.cli import main

raise SystemExit(main())
