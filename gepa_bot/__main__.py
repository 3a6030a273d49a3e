"""`python -m gepa_bot` runs the CLI."""

from gepa_bot.cli import main

main()
