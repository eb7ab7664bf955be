"""``python -m mobilenets.cli`` is the ``mobilenets`` command."""

from mobilenets.cli.main import main

raise SystemExit(main())
