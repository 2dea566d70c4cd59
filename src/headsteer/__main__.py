import sys

from headsteer.cli import main

sys.exit(main())
