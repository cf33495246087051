"""The one error root: every failure jobcarbon foresees is a `JobcarbonError`.

Its `str()` is one line a user or an admin can act on, and `exit_code` is what the `jobcarbon` command
exits with. Three boundaries catch it (docs/architecture.md): the CLI prints the line and exits with the
code, the hooks log it and exit 0, the sampler loop logs it and keeps sampling. Inner code raises,
never prints or exits. Kept free of imports: the hooks' light modules derive from it.
"""


class JobcarbonError(Exception):
    """A foreseeable failure, described in one line."""

    exit_code = 1
    prefix = ""  # says where the line comes from when the message alone does not ("database: ")


class UsageError(JobcarbonError):
    """The command line or a request asks for something that cannot be done (argparse's exit code)."""

    exit_code = 2
