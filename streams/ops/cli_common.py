"""What every ``freshet`` command shares: the context object, the one error catch, progress lines.

The command modules (:mod:`streams.ops.cli`, :mod:`streams.ops.report_cli`, :mod:`streams.ops.watch`,
:mod:`streams.ops.freshness`) import this module and never each other, so there is no import cycle.

Errors: a command raises a :class:`~streams.errors.FreshetError` (or calls :func:`fail`) and
:class:`FreshetGroup` prints it once, as one line ``freshet: <message>`` on stderr, exit status 2.

>>> from click.testing import CliRunner
>>> @click.group(cls=FreshetGroup)
... def tool() -> None: ...
>>> @tool.command()
... def boom() -> None:
...     raise FreshetError("topic freshet.examples does not exist; run `freshet services up` first")
>>> result = CliRunner().invoke(tool, ["boom"])
>>> result.exit_code, result.output
(2, 'freshet: topic freshet.examples does not exist; run `freshet services up` first\\n')
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from streams.errors import FreshetError
from streams.settings import Settings

__all__ = ["Context", "FreshetGroup", "fail", "pass_ctx", "progress"]


class Context:
    """The object every command receives (``@pass_ctx``): the settings, flags applied."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings


pass_ctx = click.make_pass_decorator(Context)


def fail(message: str) -> NoReturn:
    """Stop the command with a one-line message (printed once by :class:`FreshetGroup`)."""
    raise FreshetError(message)


def progress(message: str) -> None:
    """What a long-running command is doing, on stderr when it is a terminal (scripts keep a clean stderr,
    where an error is one line)."""
    if sys.stderr.isatty():
        click.echo(message, err=True)


class FreshetGroup(click.Group):
    """The ``freshet`` group: catches :class:`FreshetError` (and Kafka's errors) once for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        import kafka.errors  # here, not at import: `freshet --help` stays instant

        try:
            return super().invoke(ctx)
        except FreshetError as exc:
            click.echo(f"freshet: {exc}", err=True)
            sys.exit(2)
        except kafka.errors.KafkaError as exc:
            click.echo(f"freshet: Kafka failed ({exc}); is it running? `freshet services status`", err=True)
            sys.exit(2)
