"""``python -m edgeship.agent run|status|fsck``: exactly ``edgeship agent``, for devices without the script.

The systemd unit uses it. The CLI loads command modules lazily, so this imports only the
agent's commands, and errors and exit codes come from the one place the CLI handles them.
"""

import sys

from edgeship.cli.main import run


def main() -> None:
    sys.exit(run(["agent", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
