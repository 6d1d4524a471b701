"""``python -m streams`` is the ``freshet`` command."""

from streams.ops.cli import main

main()
