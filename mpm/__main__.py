import sys

from mpm.cli import main

sys.exit(main())
