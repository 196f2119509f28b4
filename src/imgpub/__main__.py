"""`python -m imgpub`: the same as the `imgpub` command."""

from imgpub.cli import main

main()
