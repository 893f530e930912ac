"""The `freshctl` command line: a root group that imports each part's command group only when
it is used (see `freshctl.cli.GROUPS`). It lives outside `fresh/` so that the shared plumbing
imports no pipeline part."""
