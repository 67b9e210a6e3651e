"""The name `tunebench.testing.scripted` had before 0.2 (`--plugin tunebench.testing.plugins`), kept
for one release: importing it gives that module itself, so a process that loads both names
registers the `scripted` family once."""

import sys

from tunebench.testing import scripted

sys.modules[__name__] = scripted
