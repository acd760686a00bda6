"""``python -m datashunt`` is the ``datashunt`` command."""

from .cli import main

raise SystemExit(main())
