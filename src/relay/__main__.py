"""Entry point of the ``relay`` command (and ``python -m relay``).

``relay api`` serves with gevent, which must patch the standard library before anything imports
ssl or sockets (pydantic-settings already pulls in asyncio and ssl), so that happens here first.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["api"]:
        from gevent import monkey

        monkey.patch_all()
    from relay.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
