"""``python -m streams`` is the ``freshet`` command."""

from streams.cli import main

main()
