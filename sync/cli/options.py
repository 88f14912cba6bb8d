"""How flowsync's commands are built: their setting options from the declarations, and a hint for
a global option given after the command.

`@cli.command(settings=[...])` names the settings a command takes. Each one with a flag becomes an
option spelled, typed and explained by its declaration in `sync.app.settings`, with its
environment variable and default in the help; each one without (the key and the secret) is
listed in a section of its own below the options. An option passes the text as typed and
`load_settings` validates it, so a bad value gets the same `ConfigError`, naming `--flag`, as
one from the environment or the file gets naming its variable or key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from sync.app.settings import SETTINGS, SettingSpec


class _GlobalOptionHint(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            hint = _misplaced_global_option(ctx, exc.option_name)
            if hint is None:
                raise
            raise click.UsageError(hint, ctx) from None


class FlowsyncCommand(_GlobalOptionHint):
    """A command whose setting options come from the declared settings."""

    def __init__(self, *args: Any, settings: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        specs = [SETTINGS[key] for key in settings]
        self.params[:0] = [setting_option(spec, spec.flag) for spec in specs if spec.flag is not None]
        self.without_flag = [spec for spec in specs if spec.flag is None]

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.without_flag:
            with formatter.section("Settings without a flag (environment variable, or key in the file)"):
                formatter.write_dl(
                    [(spec.env, f"{spec.help}  [key: {spec.key}]") for spec in self.without_flag]
                )
        super().format_epilog(ctx, formatter)


class FlowsyncGroup(_GlobalOptionHint, click.Group):
    """flowsync and its groups of commands: their commands are `FlowsyncCommand`s."""

    command_class = FlowsyncCommand
    group_class = type  # nested groups are FlowsyncGroups too


def setting_option(spec: SettingSpec, flag: str) -> click.Option:
    """The option for one setting, without a value of its own when left out.

    A flag not given arrives as None and falls through to the environment, the file and then
    the declared default, which the help shows.
    """
    extra = [f"env var: {spec.env}"]
    if spec.default is not None:
        extra.append(f"default: {spec.default}")
    return click.Option([flag, spec.key], metavar=spec.metavar, help=f"{spec.help}  [{'; '.join(extra)}]")


def _misplaced_global_option(ctx: click.Context, name: str) -> str | None:
    """`flowsync sync -v`: say where -v goes instead of only that `sync` has no such option."""
    root = ctx.find_root()
    if ctx is root:
        return None
    for param in root.command.params:
        if (
            isinstance(param, click.Option)
            and not param.is_eager
            and name in (*param.opts, *param.secondary_opts)
        ):
            value = "" if param.is_flag or param.count else f" {param.metavar or 'VALUE'}"
            subcommand = ctx.command_path.removeprefix(root.command_path).strip()
            return (
                f"{name} is an option of {root.command_path} itself and goes before the command: "
                f"{root.command_path} {name}{value} {subcommand} ..."
            )
    return None
