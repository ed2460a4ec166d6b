import sys

from fedbiscuit.cli import main

sys.exit(main())
