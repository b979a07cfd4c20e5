import sys

from crunet.cli import main

sys.exit(main())
