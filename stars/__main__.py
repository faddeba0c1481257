import sys

from stars.cli import main

sys.exit(main())
