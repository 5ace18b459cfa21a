"""``python -m handoff``: the same as the ``handoff`` console script."""

from handoff.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
