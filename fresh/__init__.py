"""Shared plumbing for every part of the pipeline: settings, errors, logging, the pipeline
config and client factories. Nothing part-specific lives here."""
