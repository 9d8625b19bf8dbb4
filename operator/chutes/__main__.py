import sys

from chutes.cli import main

sys.exit(main())
