"""``python -m afford``: the command line (same as the ``afford`` script)."""

from afford.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
