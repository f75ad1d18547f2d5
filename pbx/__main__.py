"""``python -m pbx``: the same as the ``pbx`` command."""

from pbx.cli import main

raise SystemExit(main())
