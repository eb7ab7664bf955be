"""``python -m mobilenets.tasks`` is the ``mobilenets`` command."""

from mobilenets.tasks.cli import main

raise SystemExit(main())
