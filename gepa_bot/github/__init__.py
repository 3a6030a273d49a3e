"""GitHub: the Action's three phases, comment commands, the bot's branch and pull request, the job artifact.

action.py is the Action's entry point (like cli.py for the command line) and the only module here that runs the
search; the rest reads a finished run through result.json (gepa_bot/result.py) and report/. publish.py is the one
path from a result to the pull request (publish(result, report, target)), for the CLI and the Action. git.py is plain git
against the remote (branch, push, checkout, credentials), rest.py GitHub's REST API (PyGithub). See
docs/architecture.md.
"""
