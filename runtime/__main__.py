"""``python -m beamish.runtime ...`` is the ``beamish`` command."""

from ._cli import main

raise SystemExit(main())
