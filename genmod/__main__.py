"""``python -m genmod``: the CLI, importing nothing from the current folder.

``python -m`` puts the current folder first on the import path, so a ``yaml.py`` lying there
would be imported in place of PyYAML. The processes of ``genmod run --nproc N`` and of
``torchrun -m genmod`` start this way: the folder is dropped before genmod imports anything,
so they import exactly what a ``genmod`` command does.
"""

import os
import sys

if sys.path and os.path.realpath(sys.path[0] or os.curdir) == os.path.realpath(os.getcwd()):
    del sys.path[0]

from genmod.cli import main  # noqa: E402 - after the import path is made safe

main()
