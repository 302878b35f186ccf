"""The ``reprokit`` command line: build, check, regrade, grade, new.

Each subcommand lives in the module that does the work and is imported only when
it is called, so ``reprokit --help`` stays fast and no subcommand pays for
another's imports (torch, otter, dask).
"""

from __future__ import annotations

import importlib

import click

#: subcommand name -> "module:attribute" of a ``click.Command``
COMMANDS: dict[str, str] = {
    "build": "reprokit.build:build_command",
    "check": "reprokit.check:check_command",
    "grade": "reprokit.grading:grade_command",
    "new": "reprokit.scaffold:new_command",
    "regrade": "reprokit.regrade:regrade_command",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup)
@click.version_option(package_name="reprokit")
def main() -> None:
    """Published ML results as autograded reproducibility assignments."""


if __name__ == "__main__":
    main()
