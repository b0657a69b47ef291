"""``python -m beamish.runtime ...`` is the ``beamish`` command."""

from .client.cli import main

raise SystemExit(main())
