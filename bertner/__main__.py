"""The `bertner` command (and `python -m bertner`): the CLI app, with Ctrl-C during its imports caught too.

Importing the commands pulls in torch and transformers, which takes seconds: a Ctrl-C then arrives
before any command's own handling (bertner.cli._app.user_errors) exists, so it is caught here.
"""

import sys


def main() -> None:
    try:
        from bertner.cli import app

        app(prog_name="bertner")
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
