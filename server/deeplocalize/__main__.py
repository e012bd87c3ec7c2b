"""`python -m deeplocalize ...`: the `deeplocalize` command."""

from .launch import entry

entry()
