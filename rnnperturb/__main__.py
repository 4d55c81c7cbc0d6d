import sys

from rnnperturb.report.cli import main

sys.exit(main())
