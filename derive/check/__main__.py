import sys

from .judge import main

sys.exit(main())
