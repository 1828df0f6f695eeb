import sys

from controlsprint.cli.main import main

sys.exit(main())
