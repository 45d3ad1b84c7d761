"""Leaderboards built from result records only (never by loading models)."""
