import sys

from harness.cli.main import main

if __name__ == "__main__":  # not when a spawned worker process (the demo's) re-imports this module
    sys.exit(main())
