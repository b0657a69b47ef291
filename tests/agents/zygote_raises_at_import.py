"""An agent module whose import raises: each import leaves a line in the file named by
$BEAMISH_TEST_IMPORT_LOG, so a test can count how often it was imported."""

import os

with open(os.environ["BEAMISH_TEST_IMPORT_LOG"], "a") as _fh:
    _fh.write(f"{os.getpid()}\n")

raise RuntimeError("this module refuses to import")
