"""Shell completion helpers shared by the parts' CLIs. They run on every TAB, before any
command callback: they read settings themselves, stay fast, and never raise."""

from __future__ import annotations

from click import Context, Parameter
from click.shell_completion import CompletionItem


def complete_entities(_ctx: Context, _param: Parameter, incomplete: str) -> list[CompletionItem]:
    """Entity names of the pipeline config (FRESH_PIPELINE_CONFIG)."""
    try:
        from fresh.pipeline import load_pipeline_config
        from fresh.settings import load_settings

        names = list(load_pipeline_config(load_settings().pipeline_config).entities)
    except Exception:  # completion must never fail the shell
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]
