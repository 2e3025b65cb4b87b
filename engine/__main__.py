import sys

from engine.cli.main import process_main

sys.exit(process_main())
