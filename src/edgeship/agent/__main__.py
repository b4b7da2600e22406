"""``python -m edgeship.agent run|status|fsck``: the agent's commands, without the rest of the CLI.

The same commands as ``edgeship agent``. Loading the full CLI imports every command group
(numpy among them), ~18 MB a device does not need for a process that runs all day; the
systemd unit uses this entry point.
"""

import sys

from edgeship.cli.agent import app
from edgeship.cli.output import err_console
from edgeship.errors import EdgeshipError


def main() -> None:
    try:
        app(args=sys.argv[1:], prog_name="python -m edgeship.agent")  # click handles usage errors itself
    except EdgeshipError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {exc.hint}", soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
