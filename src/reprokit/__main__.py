"""``python -m reprokit``: the same commands as the ``reprokit`` script."""

from reprokit.cli import main

if __name__ == "__main__":
    main()
